//! The diff without a cluster: objects built from YAML, planned by the
//! core, compared with what the cluster would hold after the writes.

use std::sync::Arc;

use herald_core::{Config, allocate};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::inputs::Inputs;

fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> Arc<K> {
    Arc::new(serde_yaml_ng::from_str(yaml).unwrap())
}

fn pool(name: &str, cidr: &str) -> Arc<herald_api::pool::IPPool> {
    object(&format!(
        "apiVersion: herald.dev/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec: {{addresses: [\"{cidr}\"]}}\n"
    ))
}

/// A LoadBalancer Service created at second `age` of the day, with `extra`
/// spec fields and annotations.
fn service(name: &str, age: u32, annotations: &str, extra: &str) -> Arc<Service> {
    object(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, uid: uid-{name}, generation: 1, creationTimestamp: \"2026-01-02T00:00:{age:02}Z\", annotations: {{{annotations}}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}] {extra}}}\n"
    ))
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn plan(objects: &Objects) -> Plan {
    allocate(&Inputs::of(objects).snapshot, &Config::default())
}

/// What the cluster holds after the driver wrote `changes`.
fn written(objects: &Objects, changes: &Changes) -> Objects {
    let mut out = objects.clone();
    for (name, _) in &changes.delete {
        out.allocations.retain(|r| &r.name_any() != name);
    }
    for r in changes.create.iter().chain(&changes.replace) {
        out.allocations
            .retain(|have| have.name_any() != r.name_any());
        out.allocations.push(Arc::new(r.clone()));
    }
    for change in &changes.statuses {
        let at = out
            .services
            .iter()
            .position(|s| service_ref(s) == change.service)
            .expect("the Service exists");
        let mut svc = (*out.services[at]).clone();
        let status = svc.status.get_or_insert_with(ServiceStatus::default);
        status.load_balancer = Some(LoadBalancerStatus {
            ingress: Some(
                change
                    .ips
                    .iter()
                    .map(|ip| LoadBalancerIngress {
                        ip: Some(ip.to_string()),
                        ip_mode: Some(IP_MODE.to_owned()),
                        ..LoadBalancerIngress::default()
                    })
                    .collect(),
            ),
        });
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != CONDITION_TYPE);
        conditions.extend(change.condition.clone());
        out.services[at] = Arc::new(svc);
    }
    out
}

#[test]
fn a_new_service_gets_a_record_then_a_status_and_then_nothing_changes() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    assert_eq!(changes.create.len(), 1);
    let record = &changes.create[0];
    assert_eq!(record.name_any(), "198-51-100-8");
    assert_eq!(record.spec.address, "198.51.100.8");
    assert_eq!(record.spec.pool, "blue");
    assert_eq!(
        record.spec.services,
        [ServiceReference {
            namespace: "shop".into(),
            name: "web".into()
        }]
    );
    let owner = &record.owner_references()[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("v1", "Service", "web", "uid-web")
    );
    assert_eq!(changes.statuses.len(), 1);
    let status = &changes.statuses[0];
    assert_eq!(status.ips, ["198.51.100.8".parse::<IpAddr>().unwrap()]);
    let c = status.condition.as_ref().unwrap();
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        (CONDITION_TYPE, "True", ALLOCATED_REASON)
    );
    assert_eq!(c.last_transition_time, now());
    assert_eq!(c.observed_generation, Some(1));
    assert!(changes.delete.is_empty() && changes.replace.is_empty());

    let after = written(&objects, &changes);
    let again = super::changes(&plan(&after), &after, &now());
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn an_exhausted_pool_gives_the_pending_condition_and_no_address() {
    let objects = Objects {
        pools: vec![pool("tiny", "198.51.100.20/32")],
        services: vec![service("first", 1, "", ""), service("second", 2, "", "")],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    assert_eq!(changes.create.len(), 1);
    let second = changes
        .statuses
        .iter()
        .find(|s| s.service.name == "second")
        .unwrap();
    assert!(second.ips.is_empty());
    let c = second.condition.as_ref().unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PoolExhausted")
    );
    assert!(!c.message.is_empty());
    let after = written(&objects, &changes);
    assert!(super::changes(&plan(&after), &after, &now()).is_empty());
}

#[test]
fn a_deleted_service_releases_its_record_and_nothing_else() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let mut after = written(&objects, &changes(&plan(&objects), &objects, &now()));
    after.services.clear();
    let changes = changes(&plan(&after), &after, &now());
    assert_eq!(changes.delete, [("198-51-100-8".to_owned(), None)]);
    assert!(changes.statuses.is_empty() && changes.create.is_empty());
}

#[test]
fn a_service_that_stops_being_herald_s_is_cleared_and_released() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let mut after = written(&objects, &changes(&plan(&objects), &objects, &now()));
    let mut svc = (*after.services[0]).clone();
    svc.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    // As the API server does on that change.
    svc.status.as_mut().unwrap().load_balancer = Some(LoadBalancerStatus::default());
    after.services[0] = Arc::new(svc);
    let changes = changes(&plan(&after), &after, &now());
    assert_eq!(changes.delete.len(), 1);
    assert_eq!(changes.statuses.len(), 1);
    let status = &changes.statuses[0];
    assert_eq!(
        (&status.service, status.ips.as_slice(), &status.condition),
        (&ServiceRef::new("shop", "web"), &[][..], &None)
    );
    assert_eq!(reasons(status), ["Released"]);
    assert!(
        status.events[0].note.starts_with("198.51.100.8 released: "),
        "{:?}",
        status.events
    );
    let cleared = written(&after, &changes);
    assert!(super::changes(&plan(&cleared), &cleared, &now()).is_empty());
}

#[test]
fn another_controller_s_service_is_not_touched() {
    let mut svc = (*service("theirs", 1, "", ", loadBalancerClass: example.com/lb")).clone();
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("198.51.100.9".into()),
                ..LoadBalancerIngress::default()
            }]),
        }),
        conditions: None,
    });
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![Arc::new(svc)],
        ..Objects::default()
    };
    assert!(changes(&plan(&objects), &objects, &now()).is_empty());
}

#[test]
fn a_service_joining_a_shared_address_replaces_the_record() {
    let key = "herald.dev/sharing-key: k";
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("a", 1, key, "")],
        ..Objects::default()
    };
    let mut after = written(&objects, &changes(&plan(&objects), &objects, &now()));
    let mut record = (*after.allocations[0]).clone();
    record.metadata.resource_version = Some("41".into());
    after.allocations[0] = Arc::new(record);
    after
        .services
        .push(service("b", 2, key, ", ports: [{port: 443}]"));
    let changes = changes(&plan(&after), &after, &now());
    assert!(changes.create.is_empty(), "{:?}", changes.create);
    assert_eq!(changes.replace.len(), 1);
    let record = &changes.replace[0];
    assert_eq!(record.metadata.resource_version.as_deref(), Some("41"));
    let names: Vec<&str> = record
        .spec
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(record.owner_references().len(), 2);
    assert_eq!(changes.statuses.len(), 1, "only b's status is new");
}

#[test]
fn a_changed_message_keeps_the_transition_time() {
    let objects = Objects {
        pools: vec![pool("tiny", "198.51.100.20/32")],
        services: vec![service("first", 1, "", ""), service("second", 2, "", "")],
        ..Objects::default()
    };
    let mut after = written(&objects, &changes(&plan(&objects), &objects, &now()));
    // Another pool appears: `second` gets an address, and its condition
    // turns True at the new time.
    after.pools.push(pool("more", "198.51.100.40/32"));
    let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
    let changes = super::changes(&plan(&after), &after, &later);
    let second = changes
        .statuses
        .iter()
        .find(|s| s.service.name == "second")
        .unwrap();
    assert_eq!(
        second.condition.as_ref().unwrap().last_transition_time,
        later
    );

    // Same status, new message (the Service now asks for a pool that does
    // not exist, then for another): the transition time stays.
    let mut pending = Objects {
        pools: vec![pool("tiny", "198.51.100.20/32")],
        services: vec![service("x", 1, "herald.dev/pool: nope", "")],
        ..Objects::default()
    };
    pending = written(&pending, &super::changes(&plan(&pending), &pending, &now()));
    pending.services[0] = {
        let mut svc = (*pending.services[0]).clone();
        svc.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("herald.dev/pool".into(), "other".into());
        Arc::new(svc)
    };
    let changes = super::changes(&plan(&pending), &pending, &later);
    let c = changes.statuses[0].condition.as_ref().unwrap();
    assert!(c.message.contains("other"), "{}", c.message);
    assert_eq!(c.last_transition_time, now());
}

#[test]
fn ipv6_records_are_named_after_the_address() {
    let objects = Objects {
        pools: vec![pool("six", "2001:db8::a/128")],
        services: vec![service("web", 1, "", ", ipFamilies: [IPv6]")],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    assert_eq!(changes.create[0].name_any(), "2001-db8--a");
    assert_eq!(changes.create[0].spec.address, "2001:db8::a");
}

#[test]
fn the_status_patch_sets_ingress_and_merges_the_condition_by_type() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    let patch = changes.statuses[0].patch();
    assert_eq!(
        patch["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "198.51.100.8", "ipMode": "VIP"}])
    );
    assert_eq!(patch["status"]["conditions"][0]["type"], CONDITION_TYPE);
    assert_eq!(patch["status"]["conditions"][0]["status"], "True");
    let clear = StatusChange {
        service: ServiceRef::new("shop", "web"),
        ips: Vec::new(),
        condition: None,
        events: Vec::new(),
    }
    .patch();
    assert_eq!(
        clear,
        json!({"status": {"loadBalancer": {"ingress": []}, "conditions": [{"type": CONDITION_TYPE, "$patch": "delete"}]}})
    );
}

// Events: one per transition, decided from what the Service shows.

/// The reasons of a status change's Events, in order.
fn reasons(change: &StatusChange) -> Vec<&str> {
    change.events.iter().map(|e| e.reason.as_str()).collect()
}

/// The status change of Service `name`.
fn status_of<'a>(changes: &'a Changes, name: &str) -> &'a StatusChange {
    changes
        .statuses
        .iter()
        .find(|s| s.service.name == name)
        .unwrap_or_else(|| panic!("no status change for {name}: {changes:?}"))
}

#[test]
fn an_allocation_is_one_normal_event_naming_addresses_and_pool() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    let web = status_of(&changes, "web");
    assert_eq!(
        web.events,
        [ServiceEvent {
            warning: false,
            action: "Allocate",
            reason: ALLOCATED_EVENT.into(),
            note: "198.51.100.8 from pool blue".into(),
            related: Some(Related::Record("198-51-100-8".into())),
        }]
    );
    // Once written, later plans have nothing to say.
    let after = written(&objects, &changes);
    assert!(super::changes(&plan(&after), &after, &now()).is_empty());
}

#[test]
fn a_new_generation_with_the_same_outcome_rewrites_the_status_without_events() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let mut after = written(&objects, &changes(&plan(&objects), &objects, &now()));
    let mut svc = (*after.services[0]).clone();
    svc.metadata.generation = Some(2);
    after.services[0] = Arc::new(svc);
    let changes = changes(&plan(&after), &after, &now());
    let web = status_of(&changes, "web");
    assert_eq!(web.condition.as_ref().unwrap().observed_generation, Some(2));
    assert!(web.events.is_empty(), "{:?}", web.events);
}

#[test]
fn exhaustion_is_a_warning_with_the_pending_reason_once() {
    let objects = Objects {
        pools: vec![pool("tiny", "198.51.100.20/32")],
        services: vec![service("first", 1, "", "")],
        ..Objects::default()
    };
    let mut cluster = written(&objects, &changes(&plan(&objects), &objects, &now()));
    cluster.services.push(service("second", 2, "", ""));
    let changes = changes(&plan(&cluster), &cluster, &now());
    assert_eq!(changes.statuses.len(), 1, "first is unchanged");
    let second = status_of(&changes, "second");
    assert_eq!(reasons(second), ["PoolExhausted"]);
    let event = &second.events[0];
    assert!(event.warning);
    assert_eq!(event.action, "Allocate");
    assert_eq!(
        event.note,
        second.condition.as_ref().unwrap().message,
        "the Event says what the condition says"
    );
    cluster = written(&cluster, &changes);
    assert!(super::changes(&plan(&cluster), &cluster, &now()).is_empty());

    // The first goes: the second gets its address, one Allocated Event;
    // the first's release has no Service left to tell.
    cluster.services.remove(0);
    let changes = super::changes(&plan(&cluster), &cluster, &now());
    assert_eq!(reasons(status_of(&changes, "second")), ["Allocated"]);
    assert_eq!(changes.statuses.len(), 1);
}

#[test]
fn a_changed_pending_reason_is_a_new_event() {
    let mut cluster = Objects {
        pools: vec![pool("tiny", "198.51.100.20/32")],
        services: vec![service("x", 1, "herald.dev/pool: nope", "")],
        ..Objects::default()
    };
    let first = changes(&plan(&cluster), &cluster, &now());
    assert_eq!(reasons(status_of(&first, "x")), ["NoMatchingPool"]);
    cluster = written(&cluster, &first);
    let mut svc = (*cluster.services[0]).clone();
    svc.metadata.annotations =
        Some([("herald.dev/ips".to_owned(), "203.0.113.1".to_owned())].into());
    cluster.services[0] = Arc::new(svc);
    let changes = changes(&plan(&cluster), &cluster, &now());
    assert_eq!(reasons(status_of(&changes, "x")), ["RequestedIPNotInPool"]);
}

#[test]
fn losing_the_address_is_released_then_pending() {
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/32")],
        services: vec![service("web", 1, "", "")],
        ..Objects::default()
    };
    let mut cluster = written(&objects, &changes(&plan(&objects), &objects, &now()));
    // The pool's address is edited away.
    cluster.pools = vec![pool("blue", "198.51.100.12/32")];
    let changes = changes(&plan(&cluster), &cluster, &now());
    let web = status_of(&changes, "web");
    assert_eq!(reasons(web), ["Released", "Allocated"]);
    assert_eq!(
        web.events[0].note,
        "198.51.100.8 released: the Service has other addresses now"
    );
    assert_eq!(
        web.events[0].related,
        Some(Related::Record("198-51-100-8".into()))
    );
    assert_eq!(web.events[1].note, "198.51.100.12 from pool blue");

    let mut cluster = written(&cluster, &changes);
    cluster.pools.clear();
    let changes = super::changes(&plan(&cluster), &cluster, &now());
    let web = status_of(&changes, "web");
    assert_eq!(reasons(web), ["Released", "NoMatchingPool"]);
    assert!(web.events[0].note.ends_with("the Service is Pending"));
}

#[test]
fn addresses_someone_else_wrote_are_not_released_by_herald() {
    // A Service of Herald's class showing an address without Herald's
    // condition (written by the controller it replaces).
    let mut svc = (*service("web", 1, "", "")).clone();
    svc.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("203.0.113.7".into()),
                ..LoadBalancerIngress::default()
            }]),
        }),
        conditions: None,
    });
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![Arc::new(svc)],
        ..Objects::default()
    };
    let changes = changes(&plan(&objects), &objects, &now());
    assert_eq!(reasons(status_of(&changes, "web")), ["Allocated"]);
}

#[test]
fn a_service_that_cannot_share_under_its_key_is_a_sharing_conflict() {
    let key = "herald.dev/sharing-key: k";
    let objects = Objects {
        pools: vec![pool("blue", "198.51.100.8/30")],
        services: vec![service("a", 1, key, "")],
        ..Objects::default()
    };
    let mut cluster = written(&objects, &changes(&plan(&objects), &objects, &now()));
    // b's port clashes with a's; c's does not.
    cluster.services.push(service("b", 2, key, ""));
    cluster
        .services
        .push(service("c", 3, key, ", ports: [{port: 443}]"));
    let changes = changes(&plan(&cluster), &cluster, &now());
    let b = status_of(&changes, "b");
    assert_eq!(b.ips, ["198.51.100.9".parse::<IpAddr>().unwrap()]);
    assert_eq!(reasons(b), ["Allocated", "SharingConflict"]);
    let conflict = &b.events[1];
    assert!(conflict.warning);
    assert_eq!(
        conflict.related,
        Some(Related::Service(ServiceRef::new("shop", "a")))
    );
    assert!(
        conflict.note.contains("\"k\"") && conflict.note.contains("shop/a"),
        "{}",
        conflict.note
    );
    // c shares a's address: no conflict, though b holds another.
    let c = status_of(&changes, "c");
    assert_eq!(c.ips, ["198.51.100.8".parse::<IpAddr>().unwrap()]);
    assert_eq!(reasons(c), ["Allocated"]);
}
