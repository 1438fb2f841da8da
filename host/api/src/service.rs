//! Services and Namespaces into the core's types: the annotations (with
//! their MetalLB spellings), `spec.loadBalancerIP`, families, ports and the
//! addresses a Service's status already shows.
//!
//! Families are read as the API server fills them (docs/allocation.md,
//! "Families"): a Service that has cluster IPs (`spec.clusterIPs`, set on
//! every Service read from a cluster) has the families listed in
//! `spec.ipFamilies` and no other; a manifest without them (usual in git)
//! is completed as a dual-stack, IPv4-first API server would complete it.

use std::net::IpAddr;

use herald_core::allocate::NAMESPACE_NAME_LABEL;
use herald_core::{Family, FamilyPolicy, Labels, Port, Request, ServiceRef, TrafficPolicy};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceSpec};
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

/// The port protocols the API server accepts (case-sensitive).
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];

/// A field's path and what is wrong with it.
type FieldProblem = (String, String);

/// `spec.clusterIP` of a headless Service.
const HEADLESS: &str = "None";

/// The Service's family policy and families, checked as the API server
/// checks them, and completed as it would complete them (checked against
/// kube-apiserver 1.34).
///
/// - The policy defaults to SingleStack, which allows one family and one
///   cluster IP.
/// - A Service whose families an API server has filled in has both
///   `spec.ipFamilies` and `spec.clusterIPs` (every Service read from a
///   cluster has): its list is final. PreferDualStack on a single-stack
///   cluster lists one family, and gets one address.
/// - Any other Service is a manifest that has not been through an API
///   server: its families are `spec.ipFamilies`, then those of further
///   cluster IPs it pins, and a dual-stack policy that lists one family
///   gets the other after it, as a dual-stack cluster gives it. An empty
///   list stays empty (the core reads it as IPv4, then IPv6 for the
///   dual-stack policies).
/// - A `type: LoadBalancer` Service cannot be headless (`clusterIP: None`):
///   the API server refuses it.
fn families(spec: &ServiceSpec) -> Result<(FamilyPolicy, Vec<Family>), FieldProblem> {
    let mut families = Vec::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        let family: Family = f
            .parse()
            .map_err(|m| (format!("spec.ipFamilies[{i}]"), m))?;
        if families.contains(&family) {
            return Err((
                format!("spec.ipFamilies[{i}]"),
                format!("{family} is listed twice"),
            ));
        }
        families.push(family);
    }
    let listed = !families.is_empty();
    let cluster_ips = cluster_ips(spec)?;
    for (i, ip) in cluster_ips.iter().enumerate() {
        let family = Family::of(*ip);
        match families.get(i) {
            Some(&listed) if listed != family => {
                return Err((
                    format!("spec.clusterIPs[{i}]"),
                    format!("{ip} is {family}, but spec.ipFamilies[{i}] is {listed}"),
                ));
            }
            Some(_) => {}
            None if families.contains(&family) => {
                return Err((
                    format!("spec.clusterIPs[{i}]"),
                    format!(
                        "a second {family} cluster IP ({ip}); a Service has at most one per family"
                    ),
                ));
            }
            None => families.push(family),
        }
    }
    let filled = listed && !cluster_ips.is_empty();
    let policy = match spec.ip_family_policy.as_deref() {
        None | Some("SingleStack") => FamilyPolicy::SingleStack,
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack,
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack,
        Some(other) => {
            return Err((
                "spec.ipFamilyPolicy".into(),
                format!(
                    "unknown policy {other:?} (expected SingleStack, PreferDualStack or RequireDualStack)"
                ),
            ));
        }
    };
    if policy == FamilyPolicy::SingleStack && families.len() > 1 {
        return Err((
            "spec.ipFamilyPolicy".into(),
            "SingleStack (also when unset) allows one family and one cluster IP; set PreferDualStack or RequireDualStack for two".into(),
        ));
    }
    if !filled
        && policy != FamilyPolicy::SingleStack
        && let [only] = families[..]
    {
        families.push(only.other());
    }
    Ok((policy, families))
}

/// `spec.clusterIPs` (or `spec.clusterIP` when that is all there is), as
/// addresses; empty for a manifest that sets neither, and for a headless
/// Service that is not a LoadBalancer.
fn cluster_ips(spec: &ServiceSpec) -> Result<Vec<IpAddr>, FieldProblem> {
    let ip = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty());
    let ips = spec.cluster_ips.as_deref().filter(|ips| !ips.is_empty());
    let (field, texts): (&str, Vec<&str>) = match (ips, ip) {
        (Some(_), None) => {
            return Err((
                "spec.clusterIPs".into(),
                "set without spec.clusterIP; the API server refuses that".into(),
            ));
        }
        (Some(ips), Some(ip)) if ips[0] != ip => {
            return Err((
                "spec.clusterIP".into(),
                format!("{ip:?} differs from spec.clusterIPs[0] {:?}", ips[0]),
            ));
        }
        (Some(ips), Some(_)) => ("spec.clusterIPs", ips.iter().map(String::as_str).collect()),
        (None, Some(ip)) => ("spec.clusterIP", vec![ip]),
        (None, None) => return Ok(Vec::new()),
    };
    let at = |i: usize| match field {
        "spec.clusterIPs" => format!("{field}[{i}]"),
        _ => field.to_owned(),
    };
    if texts[0] == HEADLESS {
        if spec.type_.as_deref() == Some("LoadBalancer") {
            return Err((
                at(0),
                "a LoadBalancer Service cannot be headless (clusterIP None); the API server refuses it".into(),
            ));
        }
        return Ok(Vec::new());
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            text.parse()
                .map_err(|_| (at(i), format!("{text:?} is not an IP address")))
        })
        .collect()
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
    let (family_policy, families) =
        families(&spec).map_err(|(field, message)| err(field, message))?;
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
        // k8s-openapi reads a missing or null port as 0.
        let port = u16::try_from(p.port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| {
                let message = match p.port {
                    0 => {
                        "missing, null or 0 (a port is 1-65535; the API server requires one)".into()
                    }
                    other => format!("{other} is not a port (1-65535)"),
                };
                err(format!("spec.ports[{i}].port"), message)
            })?;
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".to_owned());
        if !PROTOCOLS.contains(&protocol.as_str()) {
            return Err(err(
                format!("spec.ports[{i}].protocol"),
                format!(
                    "unknown protocol {protocol:?} (expected TCP, UDP or SCTP, as the API server does)"
                ),
            ));
        }
        ports.push(Port { port, protocol });
    }
    let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    if load_balancer && ports.is_empty() {
        return Err(err(
            "spec.ports".into(),
            "a LoadBalancer Service needs at least one port; the API server refuses it without"
                .into(),
        ));
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
        load_balancer,
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

    /// A LoadBalancer Service; one TCP port 80 unless `spec` lists ports.
    fn lb(annotations: &str, spec: &str) -> Service {
        let ports = if spec.contains("ports:") {
            ""
        } else {
            "ports: [{port: 80}], "
        };
        service(&format!(
            "metadata: {{name: web, namespace: shop, annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, {ports}{spec}}}"
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
    fn a_missing_or_null_port_is_named_as_such() {
        for spec in ["ports: [{port: null}]", "ports: [{name: http}]"] {
            let e = validate_service(&lb("", spec)).unwrap_err();
            assert_eq!(e.field, "spec.ports[0].port");
            assert!(e.message.starts_with("missing, null or 0"), "{}", e.message);
        }
        let e = validate_service(&lb("", "ports: [{port: -1}]")).unwrap_err();
        assert_eq!(e.message, "-1 is not a port (1-65535)");
    }

    #[test]
    fn protocols_other_than_tcp_udp_and_sctp_are_refused() {
        for protocol in ["UDP", "SCTP", "TCP"] {
            let s = validate_service(&lb(
                "",
                &format!("ports: [{{port: 53, protocol: {protocol}}}]"),
            ))
            .unwrap();
            assert_eq!(s.ports[0].protocol, protocol);
        }
        for protocol in ["ICMP", "tcp", "\"\""] {
            let e = validate_service(&lb(
                "",
                &format!("ports: [{{port: 80}}, {{port: 53, protocol: {protocol}}}]"),
            ))
            .unwrap_err();
            assert_eq!(e.field, "spec.ports[1].protocol", "{protocol}");
        }
    }

    #[test]
    fn a_load_balancer_without_ports_is_refused_and_other_types_are_not() {
        let without = service("metadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer}");
        for svc in [without, lb("", "ports: []")] {
            let e = validate_service(&svc).unwrap_err();
            assert_eq!(e.field, "spec.ports");
            assert_eq!(e.name, "shop/web");
        }
        let headless = service("metadata: {name: db, namespace: shop}\nspec: {clusterIP: None}");
        assert!(validate_service(&headless).unwrap().ports.is_empty());
    }

    fn families_of(spec: &str) -> (FamilyPolicy, Vec<Family>) {
        let s = validate_service(&lb("", spec)).unwrap();
        (s.family_policy, s.families)
    }

    fn refused(spec: &str) -> FieldError {
        validate_service(&lb("", spec)).unwrap_err()
    }

    use Family::{IPv4, IPv6};
    use FamilyPolicy::{PreferDualStack, RequireDualStack, SingleStack};

    #[test]
    fn families_filled_in_by_an_api_server_are_final() {
        // As read from a single-stack IPv4 cluster: one family, one address.
        assert_eq!(
            families_of(
                "ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv4], clusterIP: 203.0.113.7, clusterIPs: [203.0.113.7]"
            ),
            (PreferDualStack, vec![IPv4])
        );
        assert_eq!(
            families_of(
                "ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4], clusterIP: '2001:db8:ffff::7', clusterIPs: ['2001:db8:ffff::7', 203.0.113.7]"
            ),
            (PreferDualStack, vec![IPv6, IPv4])
        );
    }

    #[test]
    fn families_of_a_manifest_are_completed_as_a_dual_stack_cluster_would() {
        // What kube-apiserver 1.34 with IPv4 and IPv6 service ranges stores.
        assert_eq!(
            families_of("ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6]"),
            (PreferDualStack, vec![IPv6, IPv4])
        );
        assert_eq!(
            families_of("ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4]"),
            (RequireDualStack, vec![IPv4, IPv6])
        );
        assert_eq!(families_of("ipFamilies: [IPv6]"), (SingleStack, vec![IPv6]));
        // A pinned cluster IP without ipFamilies: its family, then the other.
        assert_eq!(
            families_of(
                "ipFamilyPolicy: PreferDualStack, clusterIP: '2001:db8:ffff::7', clusterIPs: ['2001:db8:ffff::7']"
            ),
            (PreferDualStack, vec![IPv6, IPv4])
        );
        // An empty list stays empty: the core reads it as IPv4 (then IPv6).
        assert_eq!(
            families_of("ipFamilyPolicy: PreferDualStack"),
            (PreferDualStack, vec![])
        );
        assert_eq!(families_of(""), (SingleStack, vec![]));
    }

    #[test]
    fn families_the_api_server_refuses_are_errors() {
        // An unset policy is SingleStack, as the API server defaults it.
        for spec in [
            "ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6]",
            "ipFamilies: [IPv4, IPv6]",
            "clusterIP: 203.0.113.7, clusterIPs: [203.0.113.7, '2001:db8:ffff::7']",
        ] {
            assert_eq!(refused(spec).field, "spec.ipFamilyPolicy", "{spec}");
        }
        let e = refused("ipFamilies: [IPv4, IPv4]");
        assert_eq!(e.field, "spec.ipFamilies[1]");
        let e = refused("ipFamilies: [IPv6], clusterIP: 203.0.113.7");
        assert_eq!(e.field, "spec.clusterIPs[0]");
        assert!(e.message.contains("IPv4"), "{}", e.message);
        let e = refused(
            "ipFamilyPolicy: PreferDualStack, clusterIP: 203.0.113.7, clusterIPs: [203.0.113.7, 203.0.113.8]",
        );
        assert_eq!(e.field, "spec.clusterIPs[1]");
        let e = refused("clusterIP: 203.0.113.8, clusterIPs: [203.0.113.7]");
        assert_eq!(e.field, "spec.clusterIP");
        let e = refused("clusterIPs: [203.0.113.7]");
        assert_eq!(e.field, "spec.clusterIPs");
        let e = refused("clusterIP: nope, clusterIPs: [nope]");
        assert_eq!(e.field, "spec.clusterIPs[0]");
    }

    #[test]
    fn headless_load_balancer_is_refused_and_headless_cluster_ip_service_is_not() {
        let e = refused("clusterIP: None");
        assert_eq!(e.field, "spec.clusterIP");
        assert!(e.message.contains("headless"), "{}", e.message);
        let e = refused("clusterIP: None, clusterIPs: [None]");
        assert_eq!(e.field, "spec.clusterIPs[0]");
        assert!(e.message.contains("headless"), "{}", e.message);
        let headless = service(
            "metadata: {name: db, namespace: shop}\nspec: {clusterIP: None, clusterIPs: [None], ipFamilyPolicy: PreferDualStack}",
        );
        let s = validate_service(&headless).unwrap();
        assert!(!s.load_balancer);
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
