//! The driver: writes [`Changes`] to the API server, in the order that
//! keeps one address from being shown by two Services:
//!
//! 1. records are created, then replaced: an address is recorded before
//!    any status shows it, and the API server's name uniqueness is the lock
//!    (a create that answers 409 AlreadyExists means someone else holds the
//!    address: the caller plans again once its stores show that record —
//!    unless the record there already says what was to be written: then it
//!    is this controller's own, from a write its stores do not show yet, as
//!    after the API server restarted and the records' watch is still
//!    backing off, and the round goes on);
//! 2. Service statuses are written (a strategic merge patch of the status
//!    subresource), and the Events of each written one are queued
//!    ([`crate::events`]);
//! 3. records of released addresses are deleted, after no status shows
//!    them any more.
//!
//! A record the API server refuses for itself (invalid, refused by an
//! admission policy, a server error) holds up only the Services whose
//! status would show its address: the others are written, and the first
//! such failure is reported at the end. A conflict (the record is taken),
//! a missing permission or an unreachable server stops the round at once.
//! What was written is returned either way, so the caller can wait for its
//! stores to show it.

use std::collections::HashSet;

use herald_api::plugin::PolicyPlugin;
use herald_api::pool::{IPAllocation, IPPool, allocation_name};
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};

use crate::diff::{Changes, StatusChange};
use crate::error::{Error, classify};
use crate::events::Events;
use crate::reflect::Written;
use crate::status::{self, Statuses};

/// The field manager Herald's writes are recorded under.
pub const FIELD_MANAGER: &str = "herald-controller";

const RECORDS: &str = "ipallocations.herald.dev";

/// Why a round of writes stopped.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A record was created or changed by someone else meanwhile: plan
    /// again from the stores once they show it.
    #[error("IPAllocation {name} was written by someone else meanwhile")]
    Taken {
        /// The record's name.
        name: String,
    },
    /// A request failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Writes `changes`, recording the Events of the statuses written on
/// `events`; returns what was written and how the round ended.
pub async fn write(
    client: &Client,
    changes: &Changes,
    events: &Events,
) -> (Written, Result<(), WriteError>) {
    let mut written = Written::default();
    let result = write_all(client, changes, events, &mut written).await;
    (written, result)
}

async fn write_all(
    client: &Client,
    changes: &Changes,
    events: &Events,
    written: &mut Written,
) -> Result<(), WriteError> {
    let records: Api<IPAllocation> = Api::all(client.clone());
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    // Records that could not be written, and the first such failure.
    let mut refused = HashSet::new();
    let mut first: Option<Error> = None;
    for record in &changes.create {
        let name = record.name_any();
        match records.create(&post, record).await {
            Ok(done) => {
                tracing::debug!(record = name, "created");
                written.records.push((name, done.resource_version()));
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let there = records
                    .get(&name)
                    .await
                    .map_err(|e| classify("get", RECORDS, e))?;
                if !says_the_same(&there, record) {
                    return Err(WriteError::Taken { name });
                }
                tracing::debug!(record = name, "already there");
                written.records.push((name, there.resource_version()));
            }
            Err(e) => refuse(
                classify("create", RECORDS, e),
                name,
                &mut refused,
                &mut first,
            )?,
        }
    }
    for record in &changes.replace {
        let name = record.name_any();
        match records.replace(&name, &post, record).await {
            Ok(done) => {
                tracing::debug!(record = name, "replaced");
                written.records.push((name, done.resource_version()));
            }
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
                return Err(WriteError::Taken { name });
            }
            Err(e) => refuse(
                classify("update", RECORDS, e),
                name,
                &mut refused,
                &mut first,
            )?,
        }
    }
    let patch = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    for change in changes.statuses.iter().filter(|c| !held_up(c, &refused)) {
        let api: Api<Service> = Api::namespaced(client.clone(), &change.service.namespace);
        let body = Patch::Strategic(change.patch());
        match api.patch_status(&change.service.name, &patch, &body).await {
            Ok(done) => {
                tracing::debug!(service = %change.service, "status written");
                events.record(&done.object_ref(&()), &change.events);
                written
                    .services
                    .push((change.service.clone(), done.resource_version()));
            }
            // Deleted meanwhile: nothing left to show.
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(classify("patch", "services/status", e).into()),
        }
    }
    for (name, uid) in &changes.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match records.delete(name, &params).await {
            Ok(_) => {
                tracing::debug!(record = name, "deleted");
                written.records.push((name.clone(), None));
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                written.records.push((name.clone(), None));
            }
            // Another uid: the address was recorded again meanwhile.
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                return Err(WriteError::Taken { name: name.clone() });
            }
            Err(e) => return Err(classify("delete", RECORDS, e).into()),
        }
    }
    first.map_or(Ok(()), |e| Err(e.into()))
}

/// Writes `IPPool` and `PolicyPlugin` statuses (a JSON merge patch of the
/// status subresource each), noting each in `written`. An object deleted
/// meanwhile is skipped; the first other failure ends the round.
pub async fn write_statuses(
    client: &Client,
    statuses: &Statuses,
    written: &mut Written,
) -> Result<(), Error> {
    let patch = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let pools: Api<IPPool> = Api::all(client.clone());
    for (name, status) in &statuses.pools {
        let body = Patch::Merge(status::patch(status, &status::POOL_FIELDS));
        match pools.patch_status(name, &patch, &body).await {
            Ok(done) => {
                tracing::debug!(pool = name, "status written");
                written.pools.push((name.clone(), done.resource_version()));
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(classify("patch", "ippools.herald.dev/status", e)),
        }
    }
    let plugins: Api<PolicyPlugin> = Api::all(client.clone());
    for (name, status) in &statuses.plugins {
        let body = Patch::Merge(status::patch(status, &status::PLUGIN_FIELDS));
        match plugins.patch_status(name, &patch, &body).await {
            Ok(done) => {
                tracing::debug!(plugin = name, "status written");
                written
                    .plugins
                    .push((name.clone(), done.resource_version()));
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(classify("patch", "policyplugins.herald.dev/status", e)),
        }
    }
    Ok(())
}

/// Whether the record `there` already holds what `wanted` would write: the
/// same address, pool and Services, owned by the same Service objects.
fn says_the_same(there: &IPAllocation, wanted: &IPAllocation) -> bool {
    let owners = |r: &IPAllocation| -> Vec<(String, String, String)> {
        r.owner_references()
            .iter()
            .map(|o| (o.kind.clone(), o.name.clone(), o.uid.clone()))
            .collect()
    };
    there.spec == wanted.spec && owners(there) == owners(wanted)
}

/// Notes a record the API server refused; a failure that every other
/// request would meet too (permission, connection) stops the round.
fn refuse(
    e: Error,
    name: String,
    refused: &mut HashSet<String>,
    first: &mut Option<Error>,
) -> Result<(), WriteError> {
    if !matches!(e, Error::Request { .. }) {
        return Err(e.into());
    }
    tracing::warn!(record = name, "{e}");
    refused.insert(name);
    first.get_or_insert(e);
    Ok(())
}

/// Whether a status change would show an address whose record could not be
/// written: it waits, as the address is not the Service's until recorded.
fn held_up(change: &StatusChange, refused: &HashSet<String>) -> bool {
    change
        .ips
        .iter()
        .any(|ip| refused.contains(&allocation_name(*ip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::ServiceRef;

    #[test]
    fn a_status_waits_only_for_its_own_refused_records() {
        let change = |ips: &[&str]| StatusChange {
            service: ServiceRef::new("shop", "web"),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            condition: None,
            events: Vec::new(),
        };
        let refused: HashSet<String> = ["198-51-100-72".to_owned()].into();
        assert!(held_up(&change(&["198.51.100.72"]), &refused));
        assert!(held_up(
            &change(&["2001:db8::1", "198.51.100.72"]),
            &refused
        ));
        assert!(!held_up(&change(&["198.51.100.73"]), &refused));
        assert!(!held_up(&change(&[]), &refused));
    }

    #[test]
    fn a_record_already_there_is_ours_only_if_it_says_the_same() {
        use herald_api::pool::{IPAllocationSpec, ServiceReference};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let record = |service: &str, uid: &str| {
            let mut r = IPAllocation::new(
                "198-51-100-72",
                IPAllocationSpec {
                    address: "198.51.100.72".to_owned(),
                    pool: "default".to_owned(),
                    services: vec![ServiceReference {
                        namespace: "shop".to_owned(),
                        name: service.to_owned(),
                    }],
                },
            );
            r.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Service".to_owned(),
                name: service.to_owned(),
                uid: uid.to_owned(),
                ..OwnerReference::default()
            }]);
            r
        };
        let mut there = record("web", "u1");
        there.metadata.resource_version = Some("42".to_owned());
        assert!(says_the_same(&there, &record("web", "u1")));
        assert!(!says_the_same(&there, &record("api", "u2")));
        // The same name, another Service object (deleted and made again).
        assert!(!says_the_same(&there, &record("web", "u3")));
    }

    #[test]
    fn only_a_refusal_of_the_record_itself_lets_the_round_go_on() {
        let (mut refused, mut first) = (HashSet::new(), None);
        let invalid = Error::Request {
            verb: "create",
            resource: RECORDS.to_owned(),
            message: "denied (422 Invalid)".to_owned(),
        };
        assert!(refuse(invalid, "a".to_owned(), &mut refused, &mut first).is_ok());
        assert!(refused.contains("a") && first.is_some());
        let forbidden = Error::Forbidden {
            verb: "create",
            resource: RECORDS.to_owned(),
            message: String::new(),
        };
        assert!(refuse(forbidden, "b".to_owned(), &mut refused, &mut first).is_err());
        let unreachable = Error::Unreachable("connection refused".to_owned());
        assert!(refuse(unreachable, "c".to_owned(), &mut refused, &mut first).is_err());
    }
}
