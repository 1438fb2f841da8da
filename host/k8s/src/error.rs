//! What can go wrong talking to the API server, each as one line a user
//! can act on: the kubeconfig, the CRDs, the RBAC permission (verb and
//! resource), or the API server's own answer.

use kube::core::Status;

/// The `herald.dev` resources, as RBAC and `kubectl` name them.
pub const HERALD_RESOURCES: [&str; 7] = [
    "ippools.herald.dev",
    "ipallocations.herald.dev",
    "bgppeers.herald.dev",
    "bgpadvertisements.herald.dev",
    "l2advertisements.herald.dev",
    "policyplugins.herald.dev",
    "bfdprofiles.herald.dev",
];

/// A failure of the controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable client configuration (kubeconfig or in-cluster).
    #[error(
        "no usable Kubernetes configuration: {0} (set KUBECONFIG to a working kubeconfig, or run in a cluster)"
    )]
    Config(String),
    /// The API server could not be reached, or TLS failed.
    #[error("cannot reach the API server: {0} (check the server address and CA of the kubeconfig)")]
    Unreachable(String),
    /// The API server refused the credentials (401).
    #[error("the API server refused the credentials of the kubeconfig (401 Unauthorized): {0}")]
    Unauthorized(String),
    /// A `herald.dev` kind is unknown to the API server (404 on a list).
    #[error(
        "the herald.dev CRDs are not installed ({resource} is unknown to the API server): kubectl apply --server-side -f examples/deploy/crds.yaml"
    )]
    CrdsMissing {
        /// The resource (`ippools.herald.dev`).
        resource: String,
    },
    /// The namespace of the leader-election Lease does not exist.
    #[error(
        "the lease namespace {namespace} does not exist: create it, or name another with --lease-namespace (POD_NAMESPACE)"
    )]
    LeaseNamespaceMissing {
        /// The namespace.
        namespace: String,
    },
    /// RBAC refused a request (403).
    #[error(
        "forbidden: cannot {verb} {resource}: grant Herald's identity (its ServiceAccount or kubeconfig user) {verb} on {resource} ({message})"
    )]
    Forbidden {
        /// The verb (`list`, `create`, `patch`…).
        verb: &'static str,
        /// The resource (`services/status`, `ipallocations.herald.dev`).
        resource: String,
        /// The API server's message.
        message: String,
    },
    /// Any other refusal or failure of a request.
    #[error("{verb} {resource}: {message}")]
    Request {
        /// The verb.
        verb: &'static str,
        /// The resource.
        resource: String,
        /// What went wrong.
        message: String,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names the failure of `verb` on `resource` for a user: 401, 403 and,
/// for `herald.dev` resources, 404 on a list become the errors that say
/// what to fix; a transport failure says the server cannot be reached.
pub fn classify(verb: &'static str, resource: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(status) => classify_status(verb, resource, &status),
        kube::Error::HyperError(e) => Error::Unreachable(chain(&e)),
        kube::Error::Service(e) => Error::Unreachable(chain(e.as_ref())),
        kube::Error::RustlsTls(e) => Error::Unreachable(chain(&e)),
        kube::Error::Auth(e) => Error::Config(chain(&e)),
        other => Error::Request {
            verb,
            resource: resource.to_owned(),
            message: chain(&other),
        },
    }
}

fn classify_status(verb: &'static str, resource: &str, status: &Status) -> Error {
    match status.code {
        401 => Error::Unauthorized(status.message.clone()),
        403 => Error::Forbidden {
            verb,
            resource: resource.to_owned(),
            message: status.message.clone(),
        },
        404 if verb == "list" && HERALD_RESOURCES.contains(&resource) => Error::CrdsMissing {
            resource: resource.to_owned(),
        },
        _ => Error::Request {
            verb,
            resource: resource.to_owned(),
            message: format!("{} ({} {})", status.message, status.code, status.reason),
        },
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            Status::failure("the server says no", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_missing_crd_names_the_fix() {
        let e = classify("list", "ippools.herald.dev", api(404, "NotFound"));
        let text = e.to_string();
        assert!(matches!(e, Error::CrdsMissing { .. }), "{e:?}");
        assert!(
            text.contains("kubectl apply --server-side -f examples/deploy/crds.yaml"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn a_missing_object_is_not_a_missing_crd() {
        let e = classify("delete", "ipallocations.herald.dev", api(404, "NotFound"));
        assert!(matches!(e, Error::Request { .. }), "{e:?}");
        let e = classify("list", "services", api(404, "NotFound"));
        assert!(matches!(e, Error::Request { .. }), "{e:?}");
    }

    #[test]
    fn forbidden_names_verb_and_resource() {
        let text = classify("patch", "services/status", api(403, "Forbidden")).to_string();
        assert!(
            text.starts_with("forbidden: cannot patch services/status:"),
            "{text}"
        );
    }

    #[test]
    fn unauthorized_points_at_the_credentials() {
        let e = classify("list", "services", api(401, "Unauthorized"));
        assert!(matches!(e, Error::Unauthorized(_)), "{e:?}");
    }
}
