//! Where the objects come from. Each source turns what it reads into [`SourceEvent`]s; the
//! agent's controller folds them into its [`DesiredState`] with [`absorb`], so it reacts to a
//! file and to an API server the same way.
//!
//! - [`file`](mod@file): `--source FILE`, a YAML/JSON file polled for changes (whole states).
//! - [`kube`](mod@kube): `--source kube`, watchers on the API server (object by object, with
//!   a complete re-list per kind after a watch could not resume).

pub mod file;
pub mod kube;

use std::collections::BTreeSet;

use crate::objects::{
    DesiredState, EndpointSliceView, Kind, NodeView, Object, ObjectError, ObjectEvent, ObjectKey,
    PodView, ServiceView, identity,
};

/// What a source tells the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Objects changed (watch events), in order.
    Changed(Vec<ObjectEvent>),
    /// The objects of `kind` are exactly these (a list, or a re-list after a watch expired):
    /// the ones not among them are gone.
    Listed { kind: Kind, objects: Vec<Object> },
    /// A whole new state (a file reload).
    Replaced(DesiredState),
    /// The view is complete and current: every kind has been listed, and the source is
    /// healthy again after a [`Problem`](Self::Problem).
    Synced,
    /// The source is failing (API server unreachable, watch refused); the last state stays.
    Problem(String),
}

/// What folding one event into a state did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Absorbed {
    /// The state differs from before (views compared, so a Node heartbeat that changes no
    /// field kxdp reads is no change).
    pub changed: bool,
    /// Objects that failed validation (now absent from the state), for the log.
    pub errors: Vec<ObjectError>,
}

/// Fold `event` into `state`. [`SourceEvent::Synced`] and [`SourceEvent::Problem`] change
/// nothing here (the caller tracks the source's health).
pub fn absorb(state: &mut DesiredState, event: SourceEvent) -> Absorbed {
    let mut out = Absorbed::default();
    match event {
        SourceEvent::Changed(events) => {
            for e in events {
                apply_one(state, e, &mut out);
            }
        }
        SourceEvent::Listed { kind, objects } => {
            let mut listed = BTreeSet::new();
            for object in objects {
                let (k, key) = identity(&object);
                if k != kind {
                    continue; // a source bug; never mix kinds in one listing
                }
                listed.insert(key);
                apply_one(state, ObjectEvent::Applied(object), &mut out);
            }
            for key in keys(state, kind) {
                if !listed.contains(&key) {
                    apply_one(state, ObjectEvent::Deleted(kind, key), &mut out);
                }
            }
        }
        SourceEvent::Replaced(new) => {
            out.changed = *state != new;
            *state = new;
        }
        SourceEvent::Synced | SourceEvent::Problem(_) => {}
    }
    out
}

fn apply_one(state: &mut DesiredState, event: ObjectEvent, out: &mut Absorbed) {
    let (kind, key) = match &event {
        ObjectEvent::Applied(o) => identity(o),
        ObjectEvent::Deleted(kind, key) => (*kind, key.clone()),
    };
    let before = View::of(state, kind, &key);
    if let Err(e) = state.handle(event) {
        out.errors.push(e);
    }
    if View::of(state, kind, &key) != before {
        out.changed = true;
    }
}

/// Every key of one kind in the state.
fn keys(state: &DesiredState, kind: Kind) -> Vec<ObjectKey> {
    match kind {
        Kind::Node => state.nodes.keys().map(|n| ObjectKey::new("", n)).collect(),
        Kind::Service => state.services.keys().cloned().collect(),
        Kind::EndpointSlice => state.endpoint_slices.keys().cloned().collect(),
        Kind::Pod => state.pods.keys().cloned().collect(),
    }
}

/// One stored view, copied out for comparison.
#[derive(PartialEq)]
enum View {
    Node(NodeView),
    Service(ServiceView),
    EndpointSlice(EndpointSliceView),
    Pod(PodView),
}

impl View {
    fn of(state: &DesiredState, kind: Kind, key: &ObjectKey) -> Option<View> {
        match kind {
            Kind::Node => state.nodes.get(&key.name).cloned().map(View::Node),
            Kind::Service => state.services.get(key).cloned().map(View::Service),
            Kind::EndpointSlice => state
                .endpoint_slices
                .get(key)
                .cloned()
                .map(View::EndpointSlice),
            Kind::Pod => state.pods.get(key).cloned().map(View::Pod),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::objects::parse_documents;

    fn objects(yaml: &str) -> Vec<Object> {
        parse_documents(yaml)
            .unwrap()
            .objects
            .into_iter()
            .map(|p| p.object)
            .collect()
    }

    fn service(name: &str, ip: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
        )
    }

    fn names(state: &DesiredState) -> Vec<String> {
        state.services.keys().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_listing_replaces_its_kind_and_only_its_kind() {
        let mut state = DesiredState::default();
        let first = absorb(
            &mut state,
            SourceEvent::Listed {
                kind: Kind::Service,
                objects: objects(&(service("a", "10.96.0.1") + &service("b", "10.96.0.2"))),
            },
        );
        assert!(first.changed);
        let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
        absorb(
            &mut state,
            SourceEvent::Changed(vec![ObjectEvent::Applied(objects(node).remove(0))]),
        );
        // A re-list after an outage: b was deleted meanwhile, c created.
        let relist = absorb(
            &mut state,
            SourceEvent::Listed {
                kind: Kind::Service,
                objects: objects(&(service("a", "10.96.0.1") + &service("c", "10.96.0.3"))),
            },
        );
        assert!(relist.changed);
        assert_eq!(names(&state), ["default/a", "default/c"]);
        assert!(state.nodes.contains_key("n1"), "other kinds untouched");
        // The same listing again changes nothing.
        let same = absorb(
            &mut state,
            SourceEvent::Listed {
                kind: Kind::Service,
                objects: objects(&(service("a", "10.96.0.1") + &service("c", "10.96.0.3"))),
            },
        );
        assert!(!same.changed);
    }

    #[test]
    fn events_report_whether_a_view_changed() {
        let mut state = DesiredState::default();
        let apply =
            |s: &str| SourceEvent::Changed(vec![ObjectEvent::Applied(objects(s).remove(0))]);
        assert!(absorb(&mut state, apply(&service("a", "10.96.0.1"))).changed);
        assert!(!absorb(&mut state, apply(&service("a", "10.96.0.1"))).changed);
        assert!(absorb(&mut state, apply(&service("a", "10.96.0.9"))).changed);
        // An invalid version removes the old view and is reported.
        let bad = absorb(&mut state, apply(&service("a", "not-an-ip")));
        assert!(bad.changed && bad.errors.len() == 1, "{bad:?}");
        assert!(state.services.is_empty());
        let gone = absorb(
            &mut state,
            SourceEvent::Changed(vec![ObjectEvent::Deleted(
                Kind::Service,
                ObjectKey::new("default", "a"),
            )]),
        );
        assert!(!gone.changed, "already absent");
        assert!(!absorb(&mut state, SourceEvent::Synced).changed);
    }
}
