//! Kubernetes objects → the validated views the compilers read.
//!
//! Module map:
//! - [`documents`]: a YAML/JSON stream → typed k8s-openapi objects ([`Object`]), routed by
//!   `apiVersion`/`kind`; other kinds are skipped with a note.
//! - `node`, `service`, `endpoint_slice`, `pod`: one view per kind ([`NodeView`],
//!   [`ServiceView`], [`EndpointSliceView`], [`PodView`]), with the API's defaults applied and
//!   the API server's checks repeated (a file has not been through an API server).
//! - `state`: [`DesiredState`], every view keyed by namespace and name, changed through
//!   [`DesiredState::apply`]/[`DesiredState::delete`] so a file source and a watcher feed
//!   the same model.
//! - `error`: [`ObjectError`] (one object skipped; names the object and the field) and
//!   [`ParseError`] (the whole file refused).
//! - `validate`: field checks shared by the views.
//!
//! ```
//! use kxdp_control::objects::DesiredState;
//! let (state, report) = DesiredState::parse(kxdp_control::objects::DEFAULT_OBJECTS).unwrap();
//! assert!(report.errors.is_empty());
//! assert!(state.nodes.contains_key("kxdp-a"));
//! ```

pub mod documents;
mod endpoint_slice;
mod error;
mod node;
mod pod;
mod service;
mod state;
mod validate;

pub use documents::{Documents, Object, ParsedObject, parse_documents};
pub use endpoint_slice::{
    AddressType, EndpointPortView, EndpointSliceView, EndpointView, SERVICE_NAME_LABEL,
};
pub use error::{ObjectError, ParseError};
pub use node::{
    FLANNEL_BACKEND_DATA, FLANNEL_BACKEND_TYPE, FLANNEL_PUBLIC_IP, NodeView, ZONE_LABEL,
};
pub use pod::PodView;
pub use service::{
    DEFAULT_AFFINITY_TIMEOUT, LB_SOURCE_RANGES_ANNOTATION, Protocol, ServicePortView, ServiceType,
    ServiceView, SessionAffinity, TargetPort, TrafficPolicy,
};
pub use state::{DesiredState, Kind, LoadReport, ObjectEvent, ObjectKey, identity};
pub use validate::format_mac;

/// The object file `kxdp demo` runs on: two Nodes (a kxdp node and a flannel node), Services
/// of every type and policy the data path handles, and their EndpointSlices.
pub const DEFAULT_OBJECTS: &str = include_str!("default-objects.yaml");

#[cfg(test)]
mod tests;
