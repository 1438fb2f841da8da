//! The apply step, pure: from a plan and the objects the cluster holds, what
//! to write so that the cluster shows the plan, and nothing more.
//!
//! - Every address of the plan has an `IPAllocation` named after it
//!   (DESIGN.md §3) with `spec.address`, `spec.pool`, `spec.services` and
//!   owner references to those Services: created when missing, replaced when
//!   its holders or pool changed, deleted when no Service holds it.
//! - Every qualifying Service shows its addresses in
//!   `status.loadBalancer.ingress[].ip` with `ipMode: VIP`, and the condition
//!   `herald.dev/Allocated`: True, or False with the Pending reason and
//!   message. A Service that carries Herald's condition but is no longer
//!   Herald's (deleted from the plan: another type or class) has its
//!   addresses and the condition removed. Services that never carried the
//!   condition are someone else's and are not touched.
//! - Whatever already matches is left out, so an unchanged cluster gives
//!   [`Changes::is_empty`].
//! - A status change carries the Events of its transition, decided here by
//!   comparing what the Service shows with what it gets: `Allocated`
//!   (addresses and pool), `Released`, the Pending reason as a Warning
//!   (`PoolExhausted`…) and `SharingConflict` (a sharing key it shares no
//!   address under). The driver records them once the status is written,
//!   so a transition gives one Event, however many plans see it.
//!
//! The order of the writes (records before statuses, released records
//! last) is the driver's ([`crate::write`]).

use std::collections::HashMap;
use std::net::IpAddr;

use herald_api::pool::{IPAllocation, IPAllocationSpec, ServiceReference, allocation_name};
use herald_core::{Held, Outcome, Plan, ServiceRef};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::ResourceExt;
use serde_json::json;

use crate::inputs::Objects;

/// The type of Herald's Service condition.
pub const CONDITION_TYPE: &str = "herald.dev/Allocated";
/// The condition's reason when the Service has its addresses.
pub const ALLOCATED_REASON: &str = "Allocated";
/// `status.loadBalancer.ingress[].ipMode`: traffic reaches the node with
/// the VIP as its destination.
pub const IP_MODE: &str = "VIP";

/// What to write.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Records of addresses that have none yet.
    pub create: Vec<IPAllocation>,
    /// Records whose holders or pool changed, each with the
    /// `resourceVersion` it replaces.
    pub replace: Vec<IPAllocation>,
    /// Service statuses to write.
    pub statuses: Vec<StatusChange>,
    /// Records of released addresses: name and uid.
    pub delete: Vec<(String, Option<String>)>,
}

impl Changes {
    /// Whether the cluster already shows the plan.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.replace.is_empty()
            && self.statuses.is_empty()
            && self.delete.is_empty()
    }
}

/// One Service's status as Herald wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// The Service.
    pub service: ServiceRef,
    /// The addresses to show, in the Service's family order (empty: none).
    pub ips: Vec<IpAddr>,
    /// The condition to set; `None` removes Herald's condition (the Service
    /// is no longer Herald's).
    pub condition: Option<Condition>,
    /// The Events of this change, to record once it is written.
    pub events: Vec<ServiceEvent>,
}

/// An Event on a Service: one transition of what Herald gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    /// Whether something is not as the user asked (`Warning`) or all is
    /// well (`Normal`).
    pub warning: bool,
    /// What Herald did: `Allocate` or `Release`.
    pub action: &'static str,
    /// `Allocated`, `Released`, `SharingConflict`, or the Pending reason.
    pub reason: String,
    /// What happened, for people.
    pub note: String,
    /// The other object the Event concerns.
    pub related: Option<Related>,
}

/// The other object of an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Related {
    /// The `IPAllocation` of an address, by name.
    Record(String),
    /// Another Service (the one it could not share with).
    Service(ServiceRef),
}

/// The reason of the Event of a Service that got addresses.
pub const ALLOCATED_EVENT: &str = "Allocated";
/// The reason of the Event of a Service whose addresses were taken back.
pub const RELEASED_EVENT: &str = "Released";
/// The reason of the Event of a Service that shares no address with the
/// other Services of its sharing key.
pub const SHARING_CONFLICT_EVENT: &str = "SharingConflict";

impl StatusChange {
    /// The strategic merge patch of the status subresource: the ingress list
    /// is replaced whole; the condition is merged by type, so other
    /// controllers' conditions stay.
    pub fn patch(&self) -> serde_json::Value {
        let ingress: Vec<_> = self
            .ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": IP_MODE}))
            .collect();
        let condition = match &self.condition {
            Some(c) => serde_json::to_value(c).expect("a condition serializes"),
            None => json!({"type": CONDITION_TYPE, "$patch": "delete"}),
        };
        json!({"status": {"loadBalancer": {"ingress": ingress}, "conditions": [condition]}})
    }
}

/// The Services by namespace and name, borrowed.
type ByRef<'a> = HashMap<(&'a str, &'a str), &'a Service>;

/// The changes that make the cluster show `plan`. `now` stamps a condition
/// whose status changes.
pub fn changes(plan: &Plan, objects: &Objects, now: &Time) -> Changes {
    let services: ByRef = objects
        .services
        .iter()
        .map(|s| (key(s), s.as_ref()))
        .collect();
    let mut out = Changes::default();
    records(plan, objects, &services, &mut out);
    statuses(plan, objects, &services, now, &mut out);
    out
}

/// A Service's namespace and name, as [`service_ref`] has them.
fn key(svc: &Service) -> (&str, &str) {
    let meta = &svc.metadata;
    (meta.namespace.as_deref().unwrap_or("default"), name(svc))
}

/// `name_any`, borrowed.
fn name(svc: &Service) -> &str {
    let meta = &svc.metadata;
    meta.name
        .as_deref()
        .or(meta.generate_name.as_deref())
        .unwrap_or_default()
}

fn lookup<'a>(services: &ByRef<'a>, id: &ServiceRef) -> Option<&'a Service> {
    services
        .get(&(id.namespace.as_str(), id.name.as_str()))
        .copied()
}

fn service_ref(svc: &Service) -> ServiceRef {
    let (namespace, name) = key(svc);
    ServiceRef::new(namespace, name)
}

fn records(plan: &Plan, objects: &Objects, services: &ByRef, out: &mut Changes) {
    let mut current: HashMap<&str, &IPAllocation> = objects
        .allocations
        .iter()
        .map(|r| (r.metadata.name.as_deref().unwrap_or_default(), r.as_ref()))
        .collect();
    for held in plan.allocations() {
        let name = allocation_name(held.address);
        match current.remove(name.as_str()) {
            None => out.create.push(record(&held, services)),
            Some(have) if shows_held(have, &held, services) => {}
            Some(have) => {
                let mut wanted = record(&held, services);
                wanted.metadata.resource_version = have.metadata.resource_version.clone();
                out.replace.push(wanted);
            }
        }
    }
    let mut gone: Vec<(String, Option<String>)> = current
        .into_iter()
        .map(|(name, r)| (name.to_owned(), r.metadata.uid.clone()))
        .collect();
    gone.sort();
    out.delete = gone;
}

/// Whether a record already is [`record`] of `held`: the same spec and
/// owners, compared without building it.
fn shows_held(have: &IPAllocation, held: &Held, services: &ByRef) -> bool {
    let spec = &have.spec;
    let owners = held
        .services
        .iter()
        .filter_map(|s| lookup(services, s))
        .filter_map(|svc| Some(("Service", name(svc), svc.metadata.uid.as_deref()?)));
    spec.address == held.address.to_string()
        && spec.pool == held.pool
        && spec.services.len() == held.services.len()
        && spec
            .services
            .iter()
            .zip(&held.services)
            .all(|(a, b)| a.namespace == b.namespace && a.name == b.name)
        && owners.eq(have
            .owner_references()
            .iter()
            .map(|o| (o.kind.as_str(), o.name.as_str(), o.uid.as_str())))
}

/// The record of a held address, owned by its Services.
fn record(held: &Held, services: &ByRef) -> IPAllocation {
    let mut record = IPAllocation::new(
        &allocation_name(held.address),
        IPAllocationSpec {
            address: held.address.to_string(),
            pool: held.pool.clone(),
            services: held
                .services
                .iter()
                .map(|s| ServiceReference {
                    namespace: s.namespace.clone(),
                    name: s.name.clone(),
                })
                .collect(),
        },
    );
    let owners: Vec<OwnerReference> = held
        .services
        .iter()
        .filter_map(|s| lookup(services, s))
        .filter_map(|svc| {
            Some(OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Service".to_owned(),
                name: svc.name_any(),
                uid: svc.metadata.uid.clone()?,
                ..OwnerReference::default()
            })
        })
        .collect();
    if !owners.is_empty() {
        record.metadata.owner_references = Some(owners);
    }
    record
}

fn statuses(plan: &Plan, objects: &Objects, services: &ByRef, now: &Time, out: &mut Changes) {
    let mut sharers: HashMap<&str, Vec<&Outcome>> = HashMap::new();
    for outcome in &plan.services {
        if let Some(key) = &outcome.sharing_key {
            sharers.entry(key).or_default().push(outcome);
        }
    }
    for outcome in &plan.services {
        let Some(svc) = lookup(services, &outcome.service) else {
            continue;
        };
        let (status, reason, message) = match &outcome.pending {
            None => (
                "True",
                ALLOCATED_REASON.to_owned(),
                format!(
                    "{} from pool {}",
                    list(&outcome.ips),
                    outcome.pool.as_deref().unwrap_or_default()
                ),
            ),
            Some(p) => ("False", p.reason.to_string(), p.message.clone()),
        };
        let have = condition(svc);
        let generation = svc.metadata.generation;
        let same_condition = have.is_some_and(|c| {
            c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == generation
        });
        if same_condition && shows(svc, &outcome.ips) {
            continue;
        }
        let last_transition_time = match have {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.statuses.push(StatusChange {
            service: outcome.service.clone(),
            ips: outcome.ips.clone(),
            condition: Some(Condition {
                type_: CONDITION_TYPE.to_owned(),
                status: status.to_owned(),
                reason,
                message,
                observed_generation: generation,
                last_transition_time,
            }),
            events: transitions(svc, outcome, &sharers),
        });
    }
    // Services Herald served before and serves no more.
    let planned: std::collections::HashSet<(&str, &str)> = plan
        .services
        .iter()
        .map(|o| (o.service.namespace.as_str(), o.service.name.as_str()))
        .collect();
    for svc in &objects.services {
        if condition(svc).is_some() && !planned.contains(&key(svc)) {
            let id = service_ref(svc);
            // The API server empties `status.loadBalancer` itself when the
            // type changes: the records say what the Service held.
            let mut held = shown(svc);
            for record in &objects.allocations {
                let holds = record
                    .spec
                    .services
                    .iter()
                    .any(|s| s.namespace == id.namespace && s.name == id.name);
                if let Ok(ip) = record.spec.address.parse::<IpAddr>()
                    && holds
                    && !held.contains(&ip)
                {
                    held.push(ip);
                }
            }
            let events = released(
                &held,
                &[],
                "the Service is no longer Herald's (not of type LoadBalancer, or another loadBalancerClass)",
            )
            .into_iter()
            .collect();
            out.statuses.push(StatusChange {
                service: id,
                ips: Vec::new(),
                condition: None,
                events,
            });
        }
    }
}

/// The Events of a planned Service going from what it shows to `outcome`.
fn transitions(
    svc: &Service,
    outcome: &Outcome,
    sharers: &HashMap<&str, Vec<&Outcome>>,
) -> Vec<ServiceEvent> {
    let before = shown(svc);
    let mut events = Vec::new();
    let why = match &outcome.pending {
        Some(_) => "the Service is Pending",
        None => "the Service has other addresses now",
    };
    events.extend(released(&before, &outcome.ips, why));
    let gained: Vec<IpAddr> = outcome
        .ips
        .iter()
        .copied()
        .filter(|ip| !before.contains(ip))
        .collect();
    if let Some(first) = gained.first() {
        events.push(ServiceEvent {
            warning: false,
            action: "Allocate",
            reason: ALLOCATED_EVENT.to_owned(),
            note: format!(
                "{} from pool {}",
                list(&outcome.ips),
                outcome.pool.as_deref().unwrap_or_default()
            ),
            related: Some(Related::Record(allocation_name(*first))),
        });
        events.extend(sharing_conflict(outcome, sharers));
    }
    if let Some(p) = &outcome.pending {
        let was = condition(svc)
            .filter(|c| c.status == "False")
            .map(|c| (c.reason.as_str(), c.message.as_str()));
        if was != Some((&p.reason.to_string(), &p.message)) {
            events.push(ServiceEvent {
                warning: true,
                action: "Allocate",
                reason: p.reason.to_string(),
                note: p.message.clone(),
                related: None,
            });
        }
    }
    events
}

/// The `Released` Event of the addresses of `before` not in `after`.
fn released(before: &[IpAddr], after: &[IpAddr], why: &str) -> Option<ServiceEvent> {
    let gone: Vec<IpAddr> = before
        .iter()
        .copied()
        .filter(|ip| !after.contains(ip))
        .collect();
    let first = *gone.first()?;
    Some(ServiceEvent {
        warning: false,
        action: "Release",
        reason: RELEASED_EVENT.to_owned(),
        note: format!("{} released: {why}", list(&gone)),
        related: Some(Related::Record(allocation_name(first))),
    })
}

/// The `SharingConflict` Event of a Service that got addresses none of the
/// other Services of its sharing key holds, while some of them hold
/// addresses.
fn sharing_conflict(
    outcome: &Outcome,
    sharers: &HashMap<&str, Vec<&Outcome>>,
) -> Option<ServiceEvent> {
    let key = outcome.sharing_key.as_deref()?;
    let others: Vec<&Outcome> = sharers
        .get(key)?
        .iter()
        .copied()
        .filter(|o| o.service != outcome.service && !o.ips.is_empty())
        .collect();
    if others
        .iter()
        .any(|o| o.ips.iter().any(|ip| outcome.ips.contains(ip)))
    {
        return None;
    }
    let apart: Vec<&ServiceRef> = others.iter().map(|o| &o.service).collect();
    let first = (*apart.first()?).clone();
    let names: Vec<String> = apart.iter().take(3).map(ToString::to_string).collect();
    let more = match apart.len() {
        n if n > 3 => format!(" and {} more", n - 3),
        _ => String::new(),
    };
    Some(ServiceEvent {
        warning: true,
        action: "Allocate",
        reason: SHARING_CONFLICT_EVENT.to_owned(),
        note: format!(
            "sharing key {key:?}: shares no address with {}{more} (ports that clash, traffic policies that differ, or pools or families it may not use); got {} of its own",
            names.join(", "),
            list(&outcome.ips)
        ),
        related: Some(Related::Service(first)),
    })
}

/// Addresses as `a, b`.
fn list(ips: &[IpAddr]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, ip) in ips.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        write!(out, "{sep}{ip}").expect("writing to a String cannot fail");
    }
    out
}

/// The addresses Herald gave the Service, as its status shows them: the
/// ingress IPs of a Service that carries Herald's condition (an address
/// without it is someone else's).
fn shown(svc: &Service) -> Vec<IpAddr> {
    if condition(svc).is_none() {
        return Vec::new();
    }
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.ip.as_deref()?.parse().ok())
        .collect()
}

/// Herald's condition on a Service.
fn condition(svc: &Service) -> Option<&Condition> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == CONDITION_TYPE)
}

/// Whether the Service's ingress list is exactly `ips` with `ipMode: VIP`.
fn shows(svc: &Service, ips: &[IpAddr]) -> bool {
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default();
    ingress.len() == ips.len()
        && ingress.iter().zip(ips).all(|(entry, ip)| {
            entry.ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()) == Some(*ip)
                && entry.ip_mode.as_deref() == Some(IP_MODE)
                && entry.hostname.is_none()
                && entry.ports.as_ref().is_none_or(Vec::is_empty)
        })
}

#[cfg(test)]
mod tests;
