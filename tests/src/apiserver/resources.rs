//! The resource types the fake API server serves, one row each: adding a type is adding a row.

/// One served resource type: where it lives in the URL space and what its objects are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core (`/api/v1`) group.
    pub group: &'static str,
    pub version: &'static str,
    /// Lower-case plural, as in the URL (`services`).
    pub plural: &'static str,
    /// `kind` of one object (`Service`); the list kind is this plus `List`.
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceType {
    /// `apiVersion` of its objects: `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Index into [`RESOURCES`]; the store keys objects by it.
pub(crate) type ResourceId = usize;

pub const RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
    },
];

/// The resource served at `group/version/plural`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource named by a kind (`Service`), a plural (`services`) or a lower-case kind.
pub(crate) fn by_name(name: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.kind == name || r.plural == name || r.kind.eq_ignore_ascii_case(name))
}

/// The resource an object's `apiVersion` + `kind` name.
pub(crate) fn by_type(api_version: &str, kind: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.kind == kind && r.api_version() == api_version)
}
