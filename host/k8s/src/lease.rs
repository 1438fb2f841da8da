//! Leader election: which replica of `herald controller` plans and writes.
//!
//! Every replica starts its reflectors at once (a warm standby: its stores
//! are current when it takes over); only the holder of one
//! `coordination.k8s.io/v1` Lease acts. kube-lease-manager keeps the Lease:
//! it takes a free Lease with a server-side apply of `holderIdentity` (two
//! replicas applying at once conflict, so one wins), renews it a grace
//! period before the term runs out, clears an expired holder and clears its
//! own on release. Around it, this module adds what a controller needs:
//!
//! - **a watch of the Lease**: a standby that sees it released (a leader
//!   stopped with SIGTERM) or cleared takes it at once, where the crate alone
//!   would sleep until the old term's end;
//! - **a fence**: this replica counts as leading only while the crate says
//!   it holds the Lease *and* the Lease as last seen names it with a term
//!   (`renewTime` + `leaseDurationSeconds`, both written by this replica's
//!   own clock) not yet over. A leader whose renewal hangs stops by itself
//!   when the term ends, which is when a standby may take over, rather than
//!   when the renewal finally fails;
//! - **errors step down**: any error of the crate ends leading at once; a
//!   new manager then reads the Lease again and leads again at once if the
//!   Lease still names this replica.
//!
//! A SIGKILLed leader's successor takes over when the term ends (the lease
//! duration after the last renewal): the crate clears the expired holder,
//! the watch shows the Lease free, and the standby takes it, a few round
//! trips later. A leader stopped with SIGTERM clears the Lease
//! ([`Leadership::release`]) and its successor takes over within a round
//! trip of the watch. Why a brief overlap of two
//! leaders cannot give one address twice: [`crate::controller`].

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::reflect::reflect_with;

/// The resource, as RBAC and `kubectl` name it.
pub const LEASES: &str = "leases.coordination.k8s.io";

/// The longest a release may take at shutdown: a stuck API server must not
/// keep a stopping replica alive (the term then runs out by itself).
const RELEASE_BOUND: Duration = Duration::from_secs(2);
/// The first delay before a failed manager is built again; it doubles up
/// to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest delay between attempts to build a manager.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Which Lease the replicas share, and who this one is.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This replica's name in `holderIdentity`; unique among replicas.
    pub identity: String,
    /// How long a term lasts without renewal, in whole seconds, at least
    /// 2 (the Lease counts in seconds; the renewal comes [`Self::grace`]
    /// before the end).
    pub duration: Duration,
}

impl LeaseSettings {
    /// How long before the term ends the leader renews: a third of the
    /// term, at least a second (the crate's unit), so a renewal that takes
    /// a few round trips on a loaded API server still lands in time.
    pub fn grace(&self) -> Duration {
        Duration::from_secs((self.duration.as_secs() / 3).max(1))
    }
}

/// Whether this replica leads, kept up to date by a task of its own.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Starts electing on a task of the current runtime.
    pub fn start(client: &Client, settings: LeaseSettings) -> Leadership {
        let (tx, leading) = watch::channel(false);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(elect(client.clone(), settings, tx, stopped));
        Leadership {
            leading,
            stop,
            task,
        }
    }

    /// Whether this replica leads, now and on every change.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Waits until this replica leads.
    pub async fn until_leading(&mut self) {
        // The sender lives as long as the elector, which ends only on
        // release.
        let _ = self.leading.wait_for(|leading| *leading).await;
    }

    /// Waits until this replica no longer leads.
    pub async fn until_lost(&mut self) {
        let _ = self.leading.wait_for(|leading| !*leading).await;
    }

    /// Stops electing and clears the Lease if this replica holds it, so a
    /// standby takes over at once; a stuck API server holds this up at most a
    /// few seconds (the term then runs out by itself).
    pub async fn release(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(RELEASE_BOUND * 2, self.task)
            .await
            .is_err()
        {
            tracing::warn!("the lease was not released in time; it runs out by itself");
        }
    }
}

/// How one manager's time ended.
enum Outcome {
    /// Release was asked for.
    Stop,
    /// The Lease was seen free while another held it: take it now.
    Freed,
    /// The crate failed.
    Failed(LeaseManagerError),
}

/// The elector: a manager at a time, built again after each failure or
/// release seen, until stopped.
async fn elect(
    client: Client,
    settings: LeaseSettings,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let (signals, mut changed) = mpsc::channel(1);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", settings.name));
    let (lease, watch) = reflect_with(api, config, LEASES, &signals);
    let key = ObjectRef::new(&settings.name).within(&settings.namespace);
    let mut retry = FIRST_RETRY;
    loop {
        let failure = match build(&client, &settings).await {
            Ok(manager) => {
                match hold(
                    &manager,
                    &settings,
                    &tx,
                    &lease,
                    &key,
                    &mut changed,
                    &mut stop,
                )
                .await
                {
                    Outcome::Stop => {
                        publish(&tx, false);
                        // A release by a replica that no longer holds the
                        // Lease would clear its successor's.
                        if term(&lease, &key).is_some_and(|t| t.holder(&settings.identity)) {
                            release(&manager).await;
                        }
                        break;
                    }
                    Outcome::Freed => {
                        retry = FIRST_RETRY;
                        continue;
                    }
                    Outcome::Failed(e) => e,
                }
            }
            Err(e) => e,
        };
        publish(&tx, false);
        tracing::warn!(retry_in = ?retry, "lease {}/{}: {failure}", settings.namespace, settings.name);
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = &mut stop => break,
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
    publish(&tx, false);
    watch.abort();
}

/// Clears this replica's hold on the Lease, at most [`RELEASE_BOUND`].
async fn release(manager: &LeaseManager) {
    match tokio::time::timeout(RELEASE_BOUND, manager.release()).await {
        Ok(Ok(())) => tracing::info!("lease released"),
        Ok(Err(e)) => tracing::warn!("releasing the lease: {e}"),
        Err(_) => tracing::warn!("releasing the lease timed out; it runs out by itself"),
    }
}

/// A manager for the Lease (created when missing).
async fn build(
    client: &Client,
    settings: &LeaseSettings,
) -> Result<LeaseManager, LeaseManagerError> {
    let params = LeaseParams::new(
        settings.identity.clone(),
        settings.duration.as_secs(),
        settings.grace().as_secs(),
    );
    LeaseManagerBuilder::new(client.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_parameters(params)
        .build()
        .await
}

/// Keeps the manager's `changed()` running (it acquires and renews) and
/// publishes whether this replica leads, until stopped, failed, or the
/// Lease is seen free while another held it.
async fn hold(
    manager: &LeaseManager,
    settings: &LeaseSettings,
    tx: &watch::Sender<bool>,
    lease: &Store<Lease>,
    key: &ObjectRef<Lease>,
    changed: &mut mpsc::Receiver<()>,
    stop: &mut oneshot::Receiver<()>,
) -> Outcome {
    // The crate's word: whether this replica holds the Lease.
    let mut holds = false;
    loop {
        let renewing = manager.changed();
        tokio::pin!(renewing);
        let result = loop {
            let ends = term(lease, key)
                .filter(|_| holds)
                .and_then(|t| t.ends_for(&settings.identity));
            let left = ends.and_then(|end| end.duration_since(SystemTime::now()).ok());
            publish(tx, left.is_some());
            tokio::select! {
                biased;
                _ = &mut *stop => return Outcome::Stop,
                result = &mut renewing => break result,
                signal = changed.recv() => {
                    if signal.is_some()
                        && !holds
                        && term(lease, key).is_some_and(|t| t.holder.is_none())
                    {
                        return Outcome::Freed;
                    }
                }
                // The fence: the term ends without a renewal seen.
                _ = tokio::time::sleep(left.unwrap_or_default()), if left.is_some() => {}
            }
        };
        match result {
            Ok(now) => holds = now,
            Err(e) => return Outcome::Failed(e),
        }
    }
}

/// Publishes whether this replica leads, logging a change.
fn publish(tx: &watch::Sender<bool>, leading: bool) {
    tx.send_if_modified(|was| {
        if *was == leading {
            return false;
        }
        *was = leading;
        if leading {
            tracing::info!("leading: this replica plans and writes");
        } else {
            tracing::info!("not leading: standing by");
        }
        true
    });
}

/// The Lease's current term, as the store shows it.
#[derive(Clone, Debug, PartialEq)]
struct Term {
    holder: Option<String>,
    renewed: Option<SystemTime>,
    duration: Option<Duration>,
}

impl Term {
    fn of(lease: &Lease) -> Term {
        let spec = lease.spec.clone().unwrap_or_default();
        Term {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renewed: spec.renew_time.map(|t| SystemTime::from(t.0)),
            duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        }
    }

    /// Whether `identity` holds the Lease.
    fn holder(&self, identity: &str) -> bool {
        self.holder.as_deref() == Some(identity)
    }

    /// When `identity`'s term ends, if it holds the Lease.
    fn ends_for(&self, identity: &str) -> Option<SystemTime> {
        if !self.holder(identity) {
            return None;
        }
        self.renewed?.checked_add(self.duration?)
    }
}

fn term(lease: &Store<Lease>, key: &ObjectRef<Lease>) -> Option<Term> {
    lease.get(key).map(|l| Term::of(&l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn lease(holder: Option<&str>, renewed: Option<i64>, seconds: Option<i32>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_term_ends_a_duration_after_the_holder_s_last_renewal() {
        let t = Term::of(&lease(Some("a"), Some(1_000), Some(15)));
        assert_eq!(
            t.ends_for("a"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_015))
        );
        assert_eq!(t.ends_for("b"), None, "only the holder has a term");
    }

    #[test]
    fn a_lease_without_renewal_or_duration_gives_no_term() {
        assert_eq!(
            Term::of(&lease(Some("a"), None, Some(15))).ends_for("a"),
            None
        );
        assert_eq!(
            Term::of(&lease(Some("a"), Some(1), None)).ends_for("a"),
            None
        );
        assert_eq!(Term::of(&Lease::default()).holder, None);
        assert_eq!(Term::of(&lease(Some(""), None, None)).holder, None);
    }

    #[test]
    fn the_renewal_comes_a_third_of_the_term_before_its_end_and_at_least_a_second() {
        let settings = |s| LeaseSettings {
            name: "l".to_owned(),
            namespace: "n".to_owned(),
            identity: "i".to_owned(),
            duration: Duration::from_secs(s),
        };
        assert_eq!(settings(15).grace(), Duration::from_secs(5));
        assert_eq!(settings(2).grace(), Duration::from_secs(1));
        assert_eq!(settings(4).grace(), Duration::from_secs(1));
    }
}
