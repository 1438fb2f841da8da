//! Noticing manifest changes: inotify events (the `notify` crate), debounced,
//! with a slow poll behind them.
//!
//! - Every event below the manifests directory (or naming the manifests
//!   file) starts or extends a burst; the reload comes after [`QUIET`] without
//!   events, so a burst of writes is one reload. Opens, reads and read-only
//!   closes are not changes (the speaker's own reloads cause them).
//! - A file that was modified and not yet closed by its writer is being
//!   written: the reload waits for its close as well, so a half-written file
//!   is not read. Both waits end at [`BOUND`] after the first event of the
//!   burst, so a writer that keeps a file open, or a steady stream of
//!   changes, still reaches the speaker within a second.
//! - Some filesystems send no inotify events (NFS, many FUSE mounts), a
//!   directory replaced wholesale leaves the watch on the old one, and a
//!   manifests *file* is watched through its name only (a symlink swap
//!   beside it is not seen): a poll of every file's path, size and
//!   modification time every [`POLL_BACKSTOP`] catches those. When no
//!   watch can be set up at all (inotify limits), the poll runs every
//!   [`POLL_ALONE`] instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{Event, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant, Interval, MissedTickBehavior};

/// Quiet time that ends a burst of events.
pub const QUIET: Duration = Duration::from_millis(20);

/// The longest a burst is held back, from its first event.
pub const BOUND: Duration = Duration::from_millis(300);

/// The poll behind the watch.
pub const POLL_BACKSTOP: Duration = Duration::from_secs(1);

/// The poll when there is no watch: well inside the second within which
/// changes must take effect.
pub const POLL_ALONE: Duration = Duration::from_millis(200);

/// Tells the speaker when to reload the manifests.
pub struct Changes {
    root: PathBuf,
    shared: Arc<Shared>,
    /// Kept for its lifetime: dropping it stops the events.
    _watcher: Option<notify::RecommendedWatcher>,
    poll: Interval,
    fingerprint: Fingerprint,
}

/// What the watcher's thread and the speaker share.
#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding the lock; a poisoned one still
        // holds consistent state.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The burst of events not yet acted on.
#[derive(Debug, Default)]
struct Pending {
    /// The first and the last event of the burst, when there is one.
    burst: Option<(Instant, Instant)>,
    /// Files modified and not yet closed by their writer.
    writing: HashSet<PathBuf>,
}

impl Pending {
    /// Takes note of one event; false when it is not a change.
    fn note(&mut self, event: &Event, now: Instant) -> bool {
        match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) | EventKind::Remove(_) => {
                for p in &event.paths {
                    self.writing.remove(p);
                }
            }
            EventKind::Access(_) => return false,
            EventKind::Modify(ModifyKind::Data(_)) => {
                self.writing.extend(event.paths.iter().cloned());
            }
            EventKind::Modify(ModifyKind::Name(_)) => {
                // Renamed away or into place: its old name is written no more.
                if let Some(from) = event.paths.first() {
                    self.writing.remove(from);
                }
            }
            _ => {}
        }
        if event.need_rescan() {
            // Events were lost: whatever was open may have been closed.
            self.writing.clear();
        }
        self.touch(now);
        true
    }

    fn touch(&mut self, now: Instant) {
        let first = self.burst.map_or(now, |(first, _)| first);
        self.burst = Some((first, now));
    }

    /// When the burst is due: after [`QUIET`] and once every writer has
    /// closed, but no later than [`BOUND`] after its first event.
    fn due(&self) -> Option<Instant> {
        let (first, last) = self.burst?;
        let bound = first + BOUND;
        Some(if self.writing.is_empty() {
            (last + QUIET).min(bound)
        } else {
            bound
        })
    }

    /// Ends the burst. Files still open at the bound are forgotten: their
    /// next write starts a burst of its own.
    fn take(&mut self) {
        self.burst = None;
        self.writing.clear();
    }
}

impl Changes {
    /// Watches `root`, a manifests directory (recursively) or file.
    pub fn new(root: &Path) -> Changes {
        let shared = Arc::new(Shared::default());
        let watcher = match watch(root, &shared) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(path = %root.display(), error = %e, poll = ?POLL_ALONE, "cannot watch the manifests; polling them instead");
                None
            }
        };
        let mut poll = tokio::time::interval_at(
            Instant::now() + POLL_ALONE,
            if watcher.is_some() {
                POLL_BACKSTOP
            } else {
                POLL_ALONE
            },
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Changes {
            root: root.to_owned(),
            shared,
            _watcher: watcher,
            poll,
            fingerprint: fingerprint(root),
        }
    }

    /// Returns when the manifests should be reloaded. Cancel-safe: a burst
    /// interrupted by another branch of a `select!` goes on at the next
    /// call.
    pub async fn next(&mut self) {
        loop {
            tokio::select! {
                () = burst(&self.shared) => break,
                _ = self.poll.tick() => {
                    // A burst under way is left to finish: its files may
                    // be half written.
                    let quiet = self.shared.pending().burst.is_none();
                    if quiet && fingerprint(&self.root) != self.fingerprint {
                        break;
                    }
                }
            }
        }
        // Taken before the reload reads the files: a change made during the
        // reload shows up at the next poll, or as an event.
        self.fingerprint = fingerprint(&self.root);
    }
}

/// Waits for a burst of events to become due, and ends it.
async fn burst(shared: &Shared) {
    loop {
        let due = {
            let mut pending = shared.pending();
            let due = pending.due();
            if due.is_some_and(|at| at <= Instant::now()) {
                pending.take();
                return;
            }
            due
        };
        match due {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.wake.notified() => {}
                }
            }
            None => shared.wake.notified().await,
        }
    }
}

/// Sets up the watch: a directory recursively; a file through its parent
/// directory, so that a file replaced by a rename is still seen.
fn watch(root: &Path, shared: &Arc<Shared>) -> notify::Result<notify::RecommendedWatcher> {
    let file = if root.is_dir() {
        None
    } else {
        root.file_name().map(ToOwned::to_owned)
    };
    let shared = Arc::clone(shared);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let now = Instant::now();
        let changed = match event {
            Ok(event) => {
                let ours = file.as_ref().is_none_or(|name| {
                    event.need_rescan()
                        || event
                            .paths
                            .iter()
                            .any(|p| p.file_name() == Some(name.as_os_str()))
                });
                ours && shared.pending().note(&event, now)
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching the manifests: reloading to be safe");
                let mut pending = shared.pending();
                pending.writing.clear();
                pending.touch(now);
                true
            }
        };
        if changed {
            shared.wake.notify_one();
        }
    })?;
    if root.is_dir() {
        watcher.watch(root, RecursiveMode::Recursive)?;
    } else {
        let parent = match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        watcher.watch(parent, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}

/// Every file's path, size and modification time.
type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// What changes when a manifest changes (for the poll). Symbolic links
/// below the root count as themselves (a swapped link changes its time) and
/// are not followed, so a link loop cannot trap the walk.
fn fingerprint(root: &Path) -> Fingerprint {
    fn walk(dir: &Path, out: &mut Fingerprint) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(&path, out),
                Ok(m) => out.push((path, m.len(), m.modified().ok())),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => walk(root, &mut out),
        Ok(m) => out.push((root.to_owned(), m.len(), m.modified().ok())),
        Err(_) => {}
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_are_not_changes() {
        let mut p = Pending::default();
        let now = Instant::now();
        for kind in [
            AccessKind::Open(AccessMode::Any),
            AccessKind::Close(AccessMode::Read),
            AccessKind::Read,
        ] {
            assert!(!p.note(&event(EventKind::Access(kind), "m/a.yaml"), now));
        }
        assert_eq!(p.due(), None);
    }

    #[test]
    fn a_burst_is_due_after_quiet_and_at_most_at_the_bound() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        p.note(&event(EventKind::Create(CreateKind::File), "m/a.yaml"), t0);
        assert_eq!(p.due(), Some(t0 + QUIET));
        let t1 = t0 + Duration::from_millis(15);
        p.note(&event(EventKind::Create(CreateKind::File), "m/b.yaml"), t1);
        assert_eq!(p.due(), Some(t1 + QUIET), "quiet restarts at each event");
        let late = t0 + BOUND - Duration::from_millis(1);
        p.note(
            &event(EventKind::Create(CreateKind::File), "m/c.yaml"),
            late,
        );
        assert_eq!(p.due(), Some(t0 + BOUND), "never later than the bound");
        p.take();
        assert_eq!(p.due(), None);
    }

    #[test]
    fn a_file_being_written_holds_the_burst_until_its_writer_closes_it() {
        let mut p = Pending::default();
        let t0 = Instant::now();
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        p.note(&event(write, "m/a.yaml"), t0);
        assert_eq!(p.due(), Some(t0 + BOUND), "open for writing: wait");
        let t1 = t0 + Duration::from_millis(50);
        p.note(
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "m/a.yaml",
            ),
            t1,
        );
        assert_eq!(p.due(), Some(t1 + QUIET), "closed: quiet time only");
        // A writer that never closes is forgotten at the bound.
        p.note(&event(write, "m/b.yaml"), t1);
        p.take();
        p.note(&event(EventKind::Create(CreateKind::File), "m/c.yaml"), t1);
        assert_eq!(p.due(), Some(t1 + QUIET));
    }
}
