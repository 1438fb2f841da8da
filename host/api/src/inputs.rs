//! Typed objects into what allocation reads: the one place where Services,
//! Namespaces, `IPPool`s, `IPAllocation`s and `PolicyPlugin`s become a
//! [`Snapshot`] and plugin specs. The manifest loader ([`crate::load`]) and
//! the controller's reflectors (herald-k8s) both go through it, so
//! `herald plan` and the cluster agree on the same objects by construction.
//! The speaker's kinds (Nodes, `BGPPeer`s, advertisements, the passwords of
//! `passwordSecret`s) go through it too when the speaker reads the API.

use std::collections::BTreeMap;

use herald_core::bgp::{
    BfdProfile, BgpAdvertisement, BgpPeer, SecretKeyRef, SecretPasswords, TCP_MD5_MAX_KEY_LEN,
};
use herald_core::node::Node as CoreNode;
use herald_core::plugin::PolicyPluginSpec;
use herald_core::{ConfigError, Snapshot};
use k8s_openapi::api::core::v1::{Namespace, Node, Secret, Service};
use kube::ResourceExt;

use crate::FieldError;
use crate::bfd::BFDProfile;
use crate::bgp::{BGPAdvertisement, BGPPeer};
use crate::l2::L2Advertisement;
use crate::node::validate_node;
use crate::plugin::PolicyPlugin;
use crate::pool::{IPAllocation, IPPool};
use crate::service::{namespace_labels, validate_service};

impl From<FieldError> for ConfigError {
    fn from(e: FieldError) -> ConfigError {
        ConfigError {
            kind: e.kind.to_owned(),
            message: format!("{}: {}", e.field, e.message),
            name: e.name,
        }
    }
}

/// Adds a Service. A field the API server would refuse is an error (the
/// loader stops on it; a cluster cannot hold such a Service).
pub fn add_service(snapshot: &mut Snapshot, svc: &Service) -> Result<(), FieldError> {
    snapshot.services.push(validate_service(svc)?);
    Ok(())
}

/// Adds a Namespace's labels.
pub fn add_namespace(snapshot: &mut Snapshot, ns: &Namespace) {
    let (name, labels) = namespace_labels(ns);
    snapshot.namespaces.insert(name, labels);
}

/// Adds a pool; a malformed one is kept as invalid (the allocator reports
/// it and uses it for nothing).
pub fn add_pool(snapshot: &mut Snapshot, pool: &IPPool) {
    snapshot.pools.push(pool.validate());
}

/// Adds a held address; a record that does not validate is reported and
/// holds nothing.
pub fn add_allocation(snapshot: &mut Snapshot, record: &IPAllocation) -> Result<(), ConfigError> {
    snapshot.allocations.push(record.validate()?);
    Ok(())
}

/// A `PolicyPlugin` as the plugin registry takes it: its name and its
/// validated spec.
pub fn plugin(plugin: &PolicyPlugin) -> Result<(String, PolicyPluginSpec), ConfigError> {
    Ok((plugin.name_any(), plugin.validate()?))
}

/// Adds a Node (the speaker's inputs); one whose addresses do not parse is
/// reported and left out.
pub fn add_node(nodes: &mut Vec<CoreNode>, node: &Node) -> Result<(), ConfigError> {
    nodes.push(validate_node(node)?);
    Ok(())
}

/// Adds a `BGPPeer`; one that does not validate is reported and left out.
pub fn add_bgp_peer(peers: &mut Vec<BgpPeer>, peer: &BGPPeer) -> Result<(), ConfigError> {
    peers.push(peer.validate()?);
    Ok(())
}

/// Adds a `BFDProfile`; one that does not validate is reported and left
/// out (and so are the peers that name it, see [`check_bfd_profiles`]).
pub fn add_bfd_profile(
    profiles: &mut BTreeMap<String, BfdProfile>,
    profile: &BFDProfile,
) -> Result<(), ConfigError> {
    let profile = profile.validate()?;
    profiles.insert(profile.name.clone(), profile);
    Ok(())
}

/// Leaves out, and reports, each peer whose `bfdProfile` names no valid
/// `BFDProfile`: running its BGP session without the BFD it asks for would
/// hide a node's loss for the whole hold time. Called once every object is
/// read (a peer may come before its profile).
pub fn check_bfd_profiles(
    peers: &mut Vec<BgpPeer>,
    profiles: &BTreeMap<String, BfdProfile>,
    errors: &mut Vec<ConfigError>,
) {
    peers.retain(|peer| match &peer.bfd_profile {
        Some(name) if !profiles.contains_key(name) => {
            errors.push(ConfigError {
                kind: "BGPPeer".into(),
                name: peer.name.clone(),
                message: format!(
                    "spec.bfdProfile: there is no valid BFDProfile {name:?}; the peer is left out until there is"
                ),
            });
            false
        }
        _ => true,
    });
}

/// Adds a `BGPAdvertisement`; one that does not validate is reported and
/// left out.
pub fn add_bgp_advertisement(
    advertisements: &mut Vec<BgpAdvertisement>,
    advertisement: &BGPAdvertisement,
) -> Result<(), ConfigError> {
    advertisements.push(advertisement.validate()?);
    Ok(())
}

/// Adds an `L2Advertisement`; one that does not validate is reported and
/// left out.
pub fn add_l2_advertisement(
    advertisements: &mut Vec<herald_core::l2::L2Advertisement>,
    advertisement: &L2Advertisement,
) -> Result<(), ConfigError> {
    advertisements.push(advertisement.validate()?);
    Ok(())
}

/// Records the TCP MD5 password a `passwordSecret` names, from its Secret
/// (`None`: not found): the key's value, UTF-8, 1 to
/// [`TCP_MD5_MAX_KEY_LEN`] bytes as `spec.password`, or why it is not
/// usable. The value itself is never echoed.
pub fn add_secret_password(
    passwords: &mut SecretPasswords,
    reference: &SecretKeyRef,
    secret: Option<&Secret>,
) {
    let what = format!(
        "Secret {}/{} key {:?}",
        reference.namespace, reference.name, reference.key
    );
    let value = match secret {
        None => Err(format!("{what}: the Secret is not found")),
        Some(secret) => {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&reference.key))
                .map(|b| b.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(&reference.key))
                        .map(|s| s.clone().into_bytes())
                });
            match bytes {
                None => Err(format!("{what}: the Secret has no such key")),
                Some(bytes) => match String::from_utf8(bytes) {
                    Err(_) => Err(format!("{what}: the value is not UTF-8")),
                    Ok(p) if p.is_empty() => Err(format!("{what}: the value is empty")),
                    Ok(p) if p.len() > TCP_MD5_MAX_KEY_LEN => Err(format!(
                        "{what}: the value is {} bytes long; a TCP MD5 key is at most {TCP_MD5_MAX_KEY_LEN}",
                        p.len()
                    )),
                    Ok(p) => Ok(p),
                },
            }
        }
    };
    passwords.insert(reference.clone(), value);
}

#[cfg(test)]
mod speaker_tests {
    use super::*;

    fn reference() -> SecretKeyRef {
        SecretKeyRef {
            namespace: "herald".into(),
            name: "tor".into(),
            key: "password".into(),
        }
    }

    fn secret(yaml: &str) -> Secret {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn a_secret_password_is_read_and_its_problems_named() {
        let mut passwords = SecretPasswords::default();
        let r = reference();
        add_secret_password(&mut passwords, &r, None);
        assert!(
            passwords
                .get(&r)
                .unwrap()
                .as_ref()
                .unwrap_err()
                .contains("not found")
        );
        let s = secret("metadata: {name: tor, namespace: herald}\ndata: {other: czNjcmV0}\n");
        add_secret_password(&mut passwords, &r, Some(&s));
        assert!(
            passwords
                .get(&r)
                .unwrap()
                .as_ref()
                .unwrap_err()
                .contains("no such key")
        );
        let s = secret("metadata: {name: tor, namespace: herald}\ndata: {password: czNjcmV0}\n");
        add_secret_password(&mut passwords, &r, Some(&s));
        assert_eq!(passwords.get(&r), Some(&Ok("s3cret".to_owned())));
        let long = "x".repeat(TCP_MD5_MAX_KEY_LEN + 1);
        let s = secret(&format!(
            "metadata: {{name: tor, namespace: herald}}\nstringData: {{password: {long}}}\n"
        ));
        add_secret_password(&mut passwords, &r, Some(&s));
        let e = passwords.get(&r).unwrap().as_ref().unwrap_err();
        assert!(e.contains("at most 80") && !e.contains(&long), "{e}");
    }
}
