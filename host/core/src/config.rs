//! What decides whether a Service is Herald's, and how an ignored object is
//! reported: the settings and the report shared by allocation and
//! announcement planning.

use crate::service::Service;

/// The `loadBalancerClass` Herald serves by default.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "herald.dev/lb";

/// Settings of the allocator that are not in the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Services whose `loadBalancerClass` is set to anything else are not Herald's.
    pub load_balancer_class: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            load_balancer_class: DEFAULT_LOAD_BALANCER_CLASS.to_owned(),
        }
    }
}

/// A problem with an object that made Herald ignore it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    /// The object's kind (`IPPool`, `Service`…).
    pub kind: String,
    /// The object's name (`namespace/name` when namespaced).
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// DESIGN.md §4.1: `type: LoadBalancer`, and `loadBalancerClass` unset or
/// Herald's.
pub(crate) fn qualifies(s: &Service, config: &Config) -> bool {
    s.load_balancer
        && s.class
            .as_ref()
            .is_none_or(|c| *c == config.load_balancer_class)
}
