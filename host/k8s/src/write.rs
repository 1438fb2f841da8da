//! The driver: writes [`Changes`] to the API server, in the order that
//! keeps one address from being shown by two Services:
//!
//! 1. records are created, then replaced: an address is recorded before
//!    any status shows it, and the API server's name uniqueness is the lock
//!    (a create that answers 409 AlreadyExists means someone else holds the
//!    address: the caller plans again once its stores show that record);
//! 2. Service statuses are written (a strategic merge patch of the status
//!    subresource);
//! 3. records of released addresses are deleted, after no status shows
//!    them any more.
//!
//! The first failure stops the round; what was written until then is
//! returned either way, so the caller can wait for its stores to show it.

use herald_api::pool::IPAllocation;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, ResourceExt};

use crate::diff::Changes;
use crate::error::{Error, classify};
use crate::reflect::Written;

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

/// Writes `changes`; returns what was written and how the round ended.
pub async fn write(client: &Client, changes: &Changes) -> (Written, Result<(), WriteError>) {
    let mut written = Written::default();
    let result = write_all(client, changes, &mut written).await;
    (written, result)
}

async fn write_all(
    client: &Client,
    changes: &Changes,
    written: &mut Written,
) -> Result<(), WriteError> {
    let records: Api<IPAllocation> = Api::all(client.clone());
    let post = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    for record in &changes.create {
        let name = record.name_any();
        match records.create(&post, record).await {
            Ok(done) => {
                tracing::debug!(record = name, "created");
                written.records.push((name, done.resource_version()));
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                return Err(WriteError::Taken { name });
            }
            Err(e) => return Err(classify("create", RECORDS, e).into()),
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
            Err(e) => return Err(classify("update", RECORDS, e).into()),
        }
    }
    let patch = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    for change in &changes.statuses {
        let api: Api<Service> = Api::namespaced(client.clone(), &change.service.namespace);
        let body = Patch::Strategic(change.patch());
        match api.patch_status(&change.service.name, &patch, &body).await {
            Ok(done) => {
                tracing::debug!(service = %change.service, "status written");
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
    Ok(())
}
