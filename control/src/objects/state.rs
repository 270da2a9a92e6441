//! [`DesiredState`]: the validated views of every object a source delivered, keyed by
//! namespace and name. A file source builds a fresh one per load; a watcher keeps one and feeds
//! it [`ObjectEvent`]s. Compilers read it; nothing here touches the data path.

use std::collections::BTreeMap;
use std::fmt;

use super::documents::{Documents, Object, parse_documents};
use super::endpoint_slice::EndpointSliceView;
use super::error::{ObjectError, ParseError};
use super::node::NodeView;
use super::pod::PodView;
use super::service::ServiceView;

/// Namespace and name (namespace empty for Nodes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        ObjectKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// The kinds kxdp reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Node,
    Service,
    EndpointSlice,
    Pod,
}

/// A change from a source: an object as it now is, or its deletion.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectEvent {
    Applied(Object),
    Deleted(Kind, ObjectKey),
}

/// What a load skipped, for logs and `kxdp inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Objects that did not deserialize or validate.
    pub errors: Vec<ObjectError>,
    /// Documents of kinds kxdp does not read, and objects that appeared twice.
    pub notes: Vec<String>,
}

/// Every object the node's data path is compiled from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// By name.
    pub nodes: BTreeMap<String, NodeView>,
    pub services: BTreeMap<ObjectKey, ServiceView>,
    pub endpoint_slices: BTreeMap<ObjectKey, EndpointSliceView>,
    pub pods: BTreeMap<ObjectKey, PodView>,
}

impl DesiredState {
    /// Parse and validate a whole file. Err only when the file is not YAML/JSON at all; bad
    /// objects are left out and listed in the report.
    pub fn parse(text: &str) -> Result<(DesiredState, LoadReport), ParseError> {
        Ok(DesiredState::from_documents(parse_documents(text)?))
    }

    /// Validate parsed documents. An object given twice: the later one wins, with a note.
    pub fn from_documents(docs: Documents) -> (DesiredState, LoadReport) {
        let mut state = DesiredState::default();
        let mut report = LoadReport {
            errors: docs.errors,
            notes: docs.skipped,
        };
        for parsed in docs.objects {
            let (kind, key) = identity(&parsed.object);
            if state.contains(kind, &key) {
                report.notes.push(format!(
                    "document {}: {kind:?} {key} appears again; this later one is used",
                    parsed.document
                ));
            }
            if let Err(e) = state.apply(parsed.object) {
                report.errors.push(e.in_document(parsed.document));
            }
        }
        (state, report)
    }

    /// Validate an object and store its view, replacing the previous one. A failed validation
    /// removes the previous view: the object as it now is cannot be used, and serving an older
    /// version of it would disagree with the source without saying so.
    pub fn apply(&mut self, object: Object) -> Result<(), ObjectError> {
        let (kind, key) = identity(&object);
        let result = match &object {
            Object::Node(n) => NodeView::from_object(n).map(|v| {
                self.nodes.insert(v.name.clone(), v);
            }),
            Object::Service(s) => ServiceView::from_object(s).map(|v| {
                self.services.insert(v.key(), v);
            }),
            Object::EndpointSlice(s) => EndpointSliceView::from_object(s).map(|v| {
                self.endpoint_slices.insert(v.key(), v);
            }),
            Object::Pod(p) => PodView::from_object(p).map(|v| {
                self.pods.insert(v.key(), v);
            }),
        };
        if result.is_err() {
            self.delete(kind, &key);
        }
        result
    }

    /// Remove an object's view; false if there was none.
    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> bool {
        match kind {
            Kind::Node => self.nodes.remove(&key.name).is_some(),
            Kind::Service => self.services.remove(key).is_some(),
            Kind::EndpointSlice => self.endpoint_slices.remove(key).is_some(),
            Kind::Pod => self.pods.remove(key).is_some(),
        }
    }

    /// Apply a watcher's event.
    pub fn handle(&mut self, event: ObjectEvent) -> Result<(), ObjectError> {
        match event {
            ObjectEvent::Applied(object) => self.apply(object),
            ObjectEvent::Deleted(kind, key) => {
                self.delete(kind, &key);
                Ok(())
            }
        }
    }

    fn contains(&self, kind: Kind, key: &ObjectKey) -> bool {
        match kind {
            Kind::Node => self.nodes.contains_key(&key.name),
            Kind::Service => self.services.contains_key(key),
            Kind::EndpointSlice => self.endpoint_slices.contains_key(key),
            Kind::Pod => self.pods.contains_key(key),
        }
    }

    /// The slices of one Service.
    pub fn slices_of<'a>(
        &'a self,
        service: &'a ObjectKey,
    ) -> impl Iterator<Item = &'a EndpointSliceView> + 'a {
        self.endpoint_slices
            .values()
            .filter(move |s| s.namespace == service.namespace && s.service == service.name)
    }
}

/// The kind and key an object will be stored under (a Node's namespace is ignored; a
/// namespaced object without one is in `default`).
pub fn identity(object: &Object) -> (Kind, ObjectKey) {
    let (kind, meta) = match object {
        Object::Node(o) => (Kind::Node, &o.metadata),
        Object::Service(o) => (Kind::Service, &o.metadata),
        Object::EndpointSlice(o) => (Kind::EndpointSlice, &o.metadata),
        Object::Pod(o) => (Kind::Pod, &o.metadata),
    };
    let name = meta.name.clone().unwrap_or_default();
    let namespace = match (kind, meta.namespace.as_deref()) {
        (Kind::Node, _) => String::new(),
        (_, None | Some("")) => "default".to_owned(),
        (_, Some(ns)) => ns.to_owned(),
    };
    (kind, ObjectKey { namespace, name })
}
