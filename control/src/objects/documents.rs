//! A file of Kubernetes objects → typed k8s-openapi objects.
//!
//! The file is a multi-document YAML stream (`---` between objects, as `kubectl get -o yaml`
//! and hand-written manifests have it) or JSON (one value, or several one after another); a
//! `v1 List` (what `kubectl get -o json` prints) is expanded into its items. Each document is
//! first read as an untyped value, routed by `apiVersion` and `kind`, then deserialized into
//! the k8s-openapi type, so a type error names the object and the field path
//! (`Service default/web: spec.ports[0].port: invalid type: string "http", expected i32`).
//!
//! Failure is by scope: a syntax error anywhere refuses the whole file ([`ParseError`]); an
//! object that does not deserialize is reported and skipped ([`ObjectError`]); a kind kxdp
//! does not read is skipped with a note.

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ObjectError, ParseError};

/// A typed object of a kind kxdp reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Node(Box<Node>),
    Service(Box<Service>),
    EndpointSlice(Box<EndpointSlice>),
    Pod(Box<Pod>),
}

/// An object and the document it came from (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedObject {
    pub document: usize,
    pub object: Object,
}

/// Everything a file held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Documents {
    pub objects: Vec<ParsedObject>,
    /// Objects that did not deserialize (skipped).
    pub errors: Vec<ObjectError>,
    /// Documents of kinds kxdp does not read, one line each (`document 4: apps/v1 Deployment
    /// default/web: not a kind kxdp reads, skipped`).
    pub skipped: Vec<String>,
}

/// Parse a YAML or JSON stream of Kubernetes objects.
pub fn parse_documents(text: &str) -> Result<Documents, ParseError> {
    let mut docs = Documents::default();
    for (i, value) in values(text)?.into_iter().enumerate() {
        route(value, i + 1, None, &mut docs);
    }
    Ok(docs)
}

/// The untyped documents. JSON goes through serde_json (libyaml refuses some valid JSON, such as
/// tab indentation); anything else is YAML.
fn values(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut out = Vec::new();
    if text.trim_start().starts_with(['{', '[']) {
        for (i, v) in serde_json::Deserializer::from_str(text)
            .into_iter::<Value>()
            .enumerate()
        {
            out.push(v.map_err(|e| ParseError {
                document: i + 1,
                message: e.to_string(),
            })?);
        }
    } else {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            out.push(Value::deserialize(doc).map_err(|e| ParseError {
                document: i + 1,
                message: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

/// Where a document is, for messages: `document 3` or `document 3, items[1]`.
fn place(document: usize, item: Option<usize>) -> String {
    match item {
        Some(j) => format!("document {document}, items[{j}]"),
        None => format!("document {document}"),
    }
}

fn route(value: Value, document: usize, item: Option<usize>, docs: &mut Documents) {
    let map = match &value {
        Value::Null => return, // an empty document (a leading or trailing `---`)
        Value::Object(map) => map,
        other => {
            let kind = match other {
                Value::Array(_) => "a list",
                Value::String(_) => "a string",
                _ => "a scalar",
            };
            docs.errors.push(
                ObjectError::new(
                    place(document, item),
                    "",
                    format!("not a Kubernetes object (found {kind}, expected a mapping with apiVersion and kind)"),
                )
                .in_document(document),
            );
            return;
        }
    };
    let text = |key: &str| {
        map.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let name = object_name(map);
    if api_version.is_empty() || kind.is_empty() {
        let what = if kind.is_empty() {
            "kind"
        } else {
            "apiVersion"
        };
        docs.errors.push(
            ObjectError::new(format!("{}{name}", place(document, item)), what, "missing")
                .in_document(document),
        );
        return;
    }
    let label = |kind: &str| format!("{kind}{name}").trim_end().to_owned();
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Node") => typed(value, &label("Node"), document, docs, Object::Node),
        ("v1", "Service") => typed(value, &label("Service"), document, docs, Object::Service),
        ("discovery.k8s.io/v1", "EndpointSlice") => typed(
            value,
            &label("EndpointSlice"),
            document,
            docs,
            Object::EndpointSlice,
        ),
        ("v1", "Pod") => typed(value, &label("Pod"), document, docs, Object::Pod),
        (_, k)
            if k.ends_with("List")
                && map.get("items").is_some_and(Value::is_array)
                && item.is_none() =>
        {
            if let Some(Value::Array(items)) = map.get("items") {
                for (j, it) in items.iter().enumerate() {
                    route(it.clone(), document, Some(j), docs);
                }
            }
        }
        (av, k) => docs.skipped.push(format!(
            "{}: {av} {k}{name}: not a kind kxdp reads, skipped",
            place(document, item)
        )),
    }
}

/// ` default/web`, ` b`, or empty: the object's name as it appears after its kind.
fn object_name(map: &serde_json::Map<String, Value>) -> String {
    let meta = map.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    match (field("namespace"), field("name")) {
        (_, None) => String::new(),
        // Node is the one cluster-scoped kind read here; the others default to `default`.
        (_, Some(n)) if kind == "Node" => format!(" {n}"),
        (ns, Some(n)) => format!(" {}/{n}", ns.unwrap_or("default")),
    }
}

fn typed<T: DeserializeOwned>(
    value: Value,
    label: &str,
    document: usize,
    docs: &mut Documents,
    wrap: impl FnOnce(Box<T>) -> Object,
) {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(obj) => docs.objects.push(ParsedObject {
            document,
            object: wrap(Box::new(obj)),
        }),
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." { String::new() } else { path };
            let object = if label.contains(' ') {
                label.to_owned()
            } else {
                format!("{label} in document {document}")
            };
            docs.errors.push(
                ObjectError::new(object, field, e.into_inner().to_string()).in_document(document),
            );
        }
    }
}
