//! Services and Namespaces into the core's types: the annotations (with
//! their MetalLB spellings), `spec.loadBalancerIP`, families, ports and the
//! addresses a Service's status already shows.

use std::net::IpAddr;

use herald_core::allocate::NAMESPACE_NAME_LABEL;
use herald_core::{Family, FamilyPolicy, Labels, Port, Request, ServiceRef, TrafficPolicy};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;

use crate::FieldError;
use crate::pool::created;

/// Annotations asking for addresses, by precedence.
pub const IPS_ANNOTATIONS: [&str; 3] = [
    "herald.dev/ips",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
];
/// Annotations asking for a pool, by precedence.
pub const POOL_ANNOTATIONS: [&str; 3] = [
    "herald.dev/pool",
    "metallb.io/address-pool",
    "metallb.universe.tf/address-pool",
];
/// Annotations giving a sharing key, by precedence.
pub const SHARING_ANNOTATIONS: [&str; 3] = [
    "herald.dev/sharing-key",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
];

/// The first annotation of `keys` that is set to something other than
/// blanks. An empty annotation counts as unset, so a blank `herald.dev/ips`
/// does not hide a MetalLB one.
fn annotation<'a>(svc: &'a Service, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
    let annotations = svc.metadata.annotations.as_ref()?;
    keys.iter().find_map(|&k| {
        let v = annotations.get(k)?.trim();
        (!v.is_empty()).then_some((k, v))
    })
}

/// The request of a Service: the first of the ips annotations, else
/// `spec.loadBalancerIP`.
fn request(svc: &Service) -> Request {
    let (source, text) = match annotation(svc, &IPS_ANNOTATIONS) {
        Some(found) => found,
        None => match svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(ip) => ("spec.loadBalancerIP", ip),
            None => return Request::None,
        },
    };
    let mut ips = Vec::new();
    for part in text.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                return Request::Invalid(format!(
                    "{source}: {:?} is not an IP address",
                    part.trim()
                ));
            }
        }
    }
    Request::Ips(ips)
}

/// Validates a Service. Fields the API server would reject (an unknown
/// family, a port out of range) are errors; a request that does not parse
/// is not: the Service goes Pending with `InvalidRequest`.
pub fn validate_service(svc: &Service) -> Result<herald_core::Service, FieldError> {
    let namespace = svc.namespace().unwrap_or_else(|| "default".to_owned());
    let name = svc.name_any();
    let err = |field: String, message: String| FieldError {
        kind: "Service",
        name: format!("{namespace}/{name}"),
        field,
        message,
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let family_policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => FamilyPolicy::SingleStack,
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err(err(
                "spec.ipFamilyPolicy".into(),
                format!(
                    "unknown policy {other:?} (expected SingleStack, PreferDualStack or RequireDualStack)"
                ),
            ));
        }
    };
    let mut families = Vec::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        let family: Family = f
            .parse()
            .map_err(|m| err(format!("spec.ipFamilies[{i}]"), m))?;
        if families.contains(&family) {
            return Err(err(
                format!("spec.ipFamilies[{i}]"),
                format!("{family} is listed twice"),
            ));
        }
        families.push(family);
    }
    let traffic_policy = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            return Err(err(
                "spec.externalTrafficPolicy".into(),
                format!("unknown policy {other:?} (expected Cluster or Local)"),
            ));
        }
    };
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let port = u16::try_from(p.port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| {
                err(
                    format!("spec.ports[{i}].port"),
                    format!("{} is not a port (1-65535)", p.port),
                )
            })?;
        ports.push(Port {
            port,
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
        });
    }
    let mut status_ips = Vec::new();
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    for (i, entry) in ingress.into_iter().flatten().enumerate() {
        if let Some(ip) = &entry.ip {
            let ip: IpAddr = ip.parse().map_err(|_| {
                err(
                    format!("status.loadBalancer.ingress[{i}].ip"),
                    format!("{ip:?} is not an IP address"),
                )
            })?;
            status_ips.push(ip);
        }
    }
    Ok(herald_core::Service {
        id: ServiceRef::new(namespace.clone(), name.clone()),
        created: created(&svc.metadata),
        labels: svc.labels().clone(),
        annotations: svc.annotations().clone(),
        load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
        class: spec.load_balancer_class.clone(),
        family_policy,
        families,
        request: request(svc),
        pool: annotation(svc, &POOL_ANNOTATIONS).map(|(_, v)| v.to_owned()),
        sharing_key: annotation(svc, &SHARING_ANNOTATIONS).map(|(_, v)| v.to_owned()),
        ports,
        traffic_policy,
        selector: spec.selector.clone().unwrap_or_default(),
        status_ips,
    })
}

/// A Namespace's name and labels, with `kubernetes.io/metadata.name` added
/// as the API server does.
pub fn namespace_labels(ns: &Namespace) -> (String, Labels) {
    let name = ns.name_any();
    let mut labels = ns.labels().clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_owned())
        .or_insert_with(|| name.clone());
    (name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn lb(annotations: &str, spec: &str) -> Service {
        service(&format!(
            "metadata: {{name: web, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, {spec}}}"
        ))
    }

    #[test]
    fn herald_annotation_wins_over_metallb_spellings_and_load_balancer_ip() {
        let s = lb(
            r#""herald.dev/ips": "198.51.100.1", "metallb.io/loadBalancerIPs": "198.51.100.2", "metallb.universe.tf/loadBalancerIPs": "198.51.100.3""#,
            "loadBalancerIP: 198.51.100.4",
        );
        let ip = |s: &str| vec![s.parse::<IpAddr>().unwrap()];
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(ip("198.51.100.1"))
        );
        let s = lb(
            r#""metallb.io/loadBalancerIPs": "198.51.100.2", "metallb.universe.tf/loadBalancerIPs": "198.51.100.3""#,
            "loadBalancerIP: 198.51.100.4",
        );
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(ip("198.51.100.2"))
        );
        let s = lb(
            r#""metallb.universe.tf/loadBalancerIPs": "198.51.100.3""#,
            "loadBalancerIP: 198.51.100.4",
        );
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(ip("198.51.100.3"))
        );
        let s = lb("", "loadBalancerIP: 198.51.100.4");
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(ip("198.51.100.4"))
        );
        let s = lb(r#""herald.dev/ips": " ""#, "loadBalancerIP: 198.51.100.4");
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(ip("198.51.100.4")),
            "a blank annotation counts as unset"
        );
    }

    #[test]
    fn request_lists_addresses_and_reports_garbage() {
        let s = lb(r#""herald.dev/ips": "198.51.100.1, 2001:db8::1""#, "");
        assert_eq!(
            validate_service(&s).unwrap().request,
            Request::Ips(vec![
                "198.51.100.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap()
            ])
        );
        let s = lb(r#""herald.dev/ips": "198.51.100.1,nope""#, "");
        let Request::Invalid(message) = validate_service(&s).unwrap().request else {
            panic!("expected an invalid request");
        };
        assert!(
            message.contains("herald.dev/ips") && message.contains("nope"),
            "{message}"
        );
    }

    #[test]
    fn pool_and_sharing_key_annotations_in_every_spelling() {
        for (pool, key) in [
            ("herald.dev/pool", "herald.dev/sharing-key"),
            ("metallb.io/address-pool", "metallb.io/allow-shared-ip"),
            (
                "metallb.universe.tf/address-pool",
                "metallb.universe.tf/allow-shared-ip",
            ),
        ] {
            let s = validate_service(&lb(&format!(r#""{pool}": blue, "{key}": k1"#), "")).unwrap();
            assert_eq!(s.pool.as_deref(), Some("blue"));
            assert_eq!(s.sharing_key.as_deref(), Some("k1"));
        }
    }

    #[test]
    fn defaults_and_bad_fields() {
        let s = validate_service(&lb("", "ports: [{port: 80}]")).unwrap();
        assert_eq!(s.family_policy, FamilyPolicy::SingleStack);
        assert_eq!(s.traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(
            s.ports,
            vec![Port {
                port: 80,
                protocol: "TCP".into()
            }]
        );
        assert!(s.load_balancer);
        let e = validate_service(&lb("", "ipFamilies: [IPv5]")).unwrap_err();
        assert_eq!(e.field, "spec.ipFamilies[0]");
        let e = validate_service(&lb("", "ipFamilyPolicy: Dual")).unwrap_err();
        assert_eq!(e.field, "spec.ipFamilyPolicy");
        let e = validate_service(&lb("", "ports: [{port: 70000}]")).unwrap_err();
        assert_eq!(e.field, "spec.ports[0].port");
        assert_eq!(e.name, "shop/web");
    }

    #[test]
    fn namespace_gets_its_name_label() {
        let ns: Namespace =
            serde_yaml_ng::from_str("metadata: {name: shop, labels: {team: a}}").unwrap();
        let (name, labels) = namespace_labels(&ns);
        assert_eq!(name, "shop");
        assert_eq!(
            labels.get(NAMESPACE_NAME_LABEL).map(String::as_str),
            Some("shop")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    }
}
