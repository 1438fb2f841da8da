//! One round: a controller, N Services created at once, then `extra` one
//! at a time; and the table of all rounds.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use herald_api::pool::IPAllocation;
use herald_control_plane::ControlPlane;
use herald_netns::{Error, Result};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::proc;
use crate::setup::{Contender, Kind};

/// How long one of the extra Services may wait for its address before it
/// counts as missed.
pub const EXTRA_BOUND: Duration = Duration::from_secs(10);

/// What a round does.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Services created at once.
    pub n: usize,
    /// Which run (names the namespace).
    pub run: usize,
    /// Services created one at a time afterwards.
    pub extra: usize,
    /// Create requests in flight at once.
    pub concurrency: usize,
    /// The longest wait for all N to have an address.
    pub bound: Duration,
    /// The directory for the controller's log.
    pub logs: PathBuf,
}

/// What a round measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// The controller.
    pub kind: Kind,
    /// Services created at once.
    pub n: usize,
    /// How long creating the N took (the API server's pace).
    pub created: Duration,
    /// From the first create until every one of the N showed an address.
    pub all: Duration,
    /// Creation to address, per Service of the N: median and p99.
    pub latency: (Duration, Duration),
    /// Creation to address, one at a time with N present: median and p99
    /// (zero when no extra Services were made), of those that got an
    /// address within [`EXTRA_BOUND`].
    pub extra: (Duration, Duration),
    /// Extra Services that got no address within [`EXTRA_BOUND`].
    pub missed: usize,
    /// Controller CPU seconds from the first create until all N had an
    /// address.
    pub cpu_bulk: f64,
    /// Controller CPU seconds over the whole round, start included.
    pub cpu_total: f64,
    /// Peak RSS (`VmHWM`) at the end of the round, MiB.
    pub peak_mib: f64,
}

impl Report {
    /// One line for the progress log.
    pub fn line(&self) -> String {
        format!(
            "{:8} N={:<6} created in {:7.2} s, all addressed after {:7.2} s; latency p50 {:7.1} ms p99 {:7.1} ms; one more p50 {:5.1} ms p99 {:5.1} ms, {} missed; CPU {:6.2} s (round {:6.2} s); peak RSS {:6.1} MiB",
            self.kind.name(),
            self.n,
            self.created.as_secs_f64(),
            self.all.as_secs_f64(),
            ms(self.latency.0),
            ms(self.latency.1),
            ms(self.extra.0),
            ms(self.extra.1),
            self.missed,
            self.cpu_bulk,
            self.cpu_total,
            self.peak_mib
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// When the benchmark saw each Service of a namespace, and when it saw
/// its address; `changed` ticks on every event.
#[derive(Default)]
struct Book {
    seen: HashMap<String, Instant>,
    created: HashMap<String, Instant>,
    addressed: HashMap<String, Instant>,
}

impl Book {
    /// Creation to address: creation is the earlier of the create call
    /// returning and the watch showing the Service.
    fn latency(&self, name: &str) -> Option<Duration> {
        let done = self.addressed.get(name)?;
        let created = match (self.created.get(name), self.seen.get(name)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(done.saturating_duration_since(*created))
    }
}

/// A watch of one namespace's Services, filling a [`Book`].
struct Watch {
    book: Arc<Mutex<Book>>,
    changed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Starts watching `namespace` and waits for the first list.
    async fn start(client: &Client, namespace: &str) -> Result<Watch> {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        let book = Arc::new(Mutex::new(Book::default()));
        let (tx, changed) = watch::channel(0u64);
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let book = book.clone();
            async move {
                let mut ready_tx = Some(ready_tx);
                let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
                while let Some(event) = events.next().await {
                    let now = Instant::now();
                    let svc = match event {
                        Ok(watcher::Event::Apply(svc) | watcher::Event::InitApply(svc)) => svc,
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = ready_tx.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        Ok(watcher::Event::Init | watcher::Event::Delete(_)) => continue,
                        Err(e) => {
                            eprintln!("watch of Services: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Some(name) = svc.metadata.name.clone() else {
                        continue;
                    };
                    let addressed = svc
                        .status
                        .and_then(|s| s.load_balancer)
                        .and_then(|lb| lb.ingress)
                        .is_some_and(|i| i.iter().any(|i| i.ip.is_some()));
                    {
                        let mut book = book.lock().expect("not poisoned");
                        book.seen.entry(name.clone()).or_insert(now);
                        if addressed {
                            book.addressed.entry(name).or_insert(now);
                        }
                    }
                    tx.send_modify(|v| *v += 1);
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .map_err(|_| Error(format!("watch of {namespace}: no first list in 30 s")))?
            .map_err(|_| Error(format!("watch of {namespace} ended")))?;
        Ok(Watch {
            book,
            changed,
            task,
        })
    }

    /// Notes that the create call for `name` returned.
    fn created(&self, name: String, at: Instant) {
        let mut book = self.book.lock().expect("not poisoned");
        book.created.entry(name).or_insert(at);
    }

    /// Waits until `done` holds of the book, at most `bound`; false if it
    /// did not.
    async fn wait(&mut self, done: impl Fn(&Book) -> bool, bound: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if done(&self.book.lock().expect("not poisoned")) {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error("the watch of Services ended".to_owned())),
                Err(_) => return Ok(false),
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A LoadBalancer Service of `class`, IPv6 only (the documentation prefix
/// has no room for 10,000 IPv4 addresses), without node ports (the node
/// port range holds 2,768).
fn service(name: &str, class: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": class,
            "ipFamilyPolicy": "SingleStack",
            "ipFamilies": ["IPv6"],
            "allocateLoadBalancerNodePorts": false,
            "ports": [{"port": 80}],
        },
    }))
    .expect("a valid Service")
}

/// Median and p99 (nearest rank).
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    v.sort();
    let rank = |p: usize| v[(v.len() * p).div_ceil(100).max(1) - 1];
    (rank(50), rank(99))
}

/// Runs one round of `contender` with `settings` on `cp`.
pub async fn run(
    cp: &ControlPlane,
    client: &Client,
    contender: &Contender,
    settings: &Settings,
) -> Result<Report> {
    let namespace = format!(
        "bench-{}-{}-{}",
        contender.kind.name(),
        settings.n,
        settings.run
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
            .expect("a valid Namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| Error(format!("create namespace {namespace}: {e}")))?;
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let mut watch = Watch::start(client, &namespace).await?;

    let log = settings.logs.join(format!("{namespace}.log"));
    let mut child = contender.start(cp, &log)?;
    let pid = child.id();
    let result = measure(&services, &mut watch, contender, settings, pid).await;
    let _ = child.kill();
    let _ = child.wait();
    let result = result.map_err(|e| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Error(format!("{e}\n--- controller log ---\n{}", tail.join("\n")))
    });
    drop(watch);
    clean(client, &services, settings.concurrency).await?;
    result
}

/// The measured part of a round, with the controller running as `pid`.
async fn measure(
    services: &Api<Service>,
    watch: &mut Watch,
    contender: &Contender,
    settings: &Settings,
    pid: u32,
) -> Result<Report> {
    let tps = proc::ticks_per_second()?;
    let started = proc::cpu_seconds(pid, tps)?;
    let create = |name: String| async move {
        services
            .create(&PostParams::default(), &service(&name, contender.class))
            .await
            .map_err(|e| Error(format!("create Service {name}: {e}")))?;
        Ok::<_, Error>((name, Instant::now()))
    };
    // Warm-up: the controller has filled its stores once this one has an
    // address.
    let (name, at) = create("warm-up".to_owned()).await?;
    watch.created(name, at);
    if !watch
        .wait(|b| !b.addressed.is_empty(), Duration::from_secs(120))
        .await?
    {
        return Err(Error(
            "the warm-up Service had no address after 120 s".to_owned(),
        ));
    }

    let cpu0 = proc::cpu_seconds(pid, tps)?;
    let t0 = Instant::now();
    let names: Vec<String> = (0..settings.n).map(|i| format!("s-{i:05}")).collect();
    let mut created = stream::iter(names.iter().cloned())
        .map(create)
        .buffer_unordered(settings.concurrency);
    while let Some(done) = created.next().await {
        let (name, at) = done?;
        watch.created(name, at);
    }
    let created = t0.elapsed();
    let all_addressed = |b: &Book| names.iter().all(|n| b.addressed.contains_key(n));
    if !watch.wait(all_addressed, settings.bound).await? {
        let book = watch.book.lock().expect("not poisoned");
        let have = names
            .iter()
            .filter(|n| book.addressed.contains_key(*n))
            .count();
        return Err(Error(format!(
            "only {have} of {} Services had an address after {:?}",
            settings.n, settings.bound
        )));
    }
    let cpu_bulk = proc::cpu_seconds(pid, tps)? - cpu0;
    let (all, latencies) = {
        let book = watch.book.lock().expect("not poisoned");
        let last = names
            .iter()
            .filter_map(|n| book.addressed.get(n))
            .max()
            .copied()
            .unwrap_or(t0);
        let latencies: Vec<Duration> = names.iter().filter_map(|n| book.latency(n)).collect();
        (last.duration_since(t0), latencies)
    };

    let (mut extra, mut missed) = (Vec::new(), 0);
    for i in 0..settings.extra {
        let (name, at) = create(format!("one-{i:03}")).await?;
        watch.created(name.clone(), at);
        // One that takes longer counts as missed; the next goes on.
        if watch
            .wait(|b| b.addressed.contains_key(&name), EXTRA_BOUND)
            .await?
        {
            extra.extend(watch.book.lock().expect("not poisoned").latency(&name));
        } else {
            missed += 1;
        }
    }
    Ok(Report {
        kind: contender.kind,
        n: settings.n,
        created,
        all,
        latency: percentiles(latencies),
        extra: percentiles(extra),
        missed,
        cpu_bulk,
        cpu_total: proc::cpu_seconds(pid, tps)? - started,
        peak_mib: proc::memory_mib(pid, "VmHWM")?,
    })
}

/// Deletes the round's Services and Herald's records of them (the
/// controllers are stopped by then; this control plane has no garbage
/// collector), so the next round starts on an empty cluster. The namespace
/// itself stays (nothing here would finalize its deletion).
async fn clean(client: &Client, services: &Api<Service>, concurrency: usize) -> Result<()> {
    let names: Vec<String> = services
        .list(&ListParams::default())
        .await
        .map_err(|e| Error(format!("list Services: {e}")))?
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    let mut deleted = stream::iter(names)
        .map(|name| async move {
            services
                .delete(&name, &DeleteParams::default())
                .await
                .map(drop)
                .map_err(|e| Error(format!("delete Service {name}: {e}")))
        })
        .buffer_unordered(concurrency);
    while let Some(done) = deleted.next().await {
        done?;
    }
    let records: Api<IPAllocation> = Api::all(client.clone());
    records
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .map(drop)
        .map_err(|e| Error(format!("delete IPAllocations: {e}")))
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The Markdown table of medians over runs, per size and controller, with
/// MetalLB's time over Herald's (above 1: Herald is faster).
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| N | controller | runs | all addressed | ratio | latency p50 | latency p99 | one more p50 | one more p99 | missed | CPU | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut sizes: Vec<usize> = reports.iter().map(|r| r.n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let of = |kind: Kind| -> Vec<&Report> {
            reports
                .iter()
                .filter(|r| r.n == n && r.kind == kind)
                .collect()
        };
        let med = |rs: &[&Report], f: &dyn Fn(&Report) -> f64| -> f64 {
            median(rs.iter().map(|r| f(r)).collect())
        };
        let herald_all = med(&of(Kind::Herald), &|r| r.all.as_secs_f64());
        for kind in [Kind::Herald, Kind::MetalLb] {
            let rs = of(kind);
            if rs.is_empty() {
                continue;
            }
            let all = med(&rs, &|r| r.all.as_secs_f64());
            let ratio = match kind {
                Kind::Herald => "1".to_owned(),
                Kind::MetalLb => format!("{:.2}×", all / herald_all),
            };
            let _ = writeln!(
                out,
                "| {n} | {} | {} | {all:.2} s | {ratio} | {:.0} ms | {:.0} ms | {:.1} ms | {:.1} ms | {} | {:.2} s | {:.0} MiB |",
                kind.name(),
                rs.len(),
                med(&rs, &|r| ms(r.latency.0)),
                med(&rs, &|r| ms(r.latency.1)),
                med(&rs, &|r| ms(r.extra.0)),
                med(&rs, &|r| ms(r.extra.1)),
                rs.iter().map(|r| r.missed).sum::<usize>(),
                med(&rs, &|r| r.cpu_bulk),
                med(&rs, &|r| r.peak_mib),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentiles(v), (ms(50), ms(99)));
        assert_eq!(percentiles(vec![ms(7)]), (ms(7), ms(7)));
        let v: Vec<Duration> = (1..=1000).rev().map(ms).collect();
        assert_eq!(percentiles(v), (ms(500), ms(990)));
    }

    #[test]
    fn creation_is_the_earlier_of_the_reply_and_the_watch() {
        let t = Instant::now();
        let mut book = Book::default();
        book.created
            .insert("a".into(), t + Duration::from_millis(5));
        book.seen.insert("a".into(), t + Duration::from_millis(2));
        book.addressed
            .insert("a".into(), t + Duration::from_millis(12));
        assert_eq!(book.latency("a"), Some(Duration::from_millis(10)));
        assert_eq!(book.latency("b"), None);
    }
}
