//! `kxdp-control`: the control plane and the `kxdp` binaries.
//!
//! Module map:
//! - [`cli`]: command-line options of `kxdp agent` (../shared/INTERFACES.md).
//! - [`agent`]: runs the engine on the node's interfaces until SIGTERM/SIGINT.
//! - [`api`]: the local API on `--api-socket` (pod attach/detach for `kxdp-cni`, inspection).
//! - [`cni`]: the `kxdp-cni` plugin (CNI 1.0.0 ADD/DEL/CHECK/VERSION, IPAM delegated).
//! - [`inspect`]: `kxdp inspect`, tables or JSON from the local API.
//! - [`metrics`]: `/metrics` (Prometheus), `/healthz`, `/readyz` on `--metrics-addr`.
//! - [`compile`]: desired state → service tables (the overlay's compiler is in [`overlay`]).
//! - [`cores`]: parsing of core lists such as `2-5,7`.
//! - [`demo`]: `kxdp demo`, a virtual cluster in network namespaces with real traffic.
//! - [`objects`]: Kubernetes objects (Node, Service, EndpointSlice, Pod) parsed from YAML/JSON
//!   and validated into the views the compilers read, held in a [`objects::DesiredState`].
//! - [`source`]: where objects come from: [`source::file`](mod@source::file) (`--source FILE`,
//!   reloaded on change) and [`source::kube`](mod@source::kube) (`--source kube`, API-server
//!   watchers), both as [`source::SourceEvent`]s folded into an [`objects::DesiredState`].
//! - [`overlay`]: the node model, its compiler and [`overlay::NodeDataplane`] (the engine on
//!   the uplink, the host port and the pods).
//! - [`netlink`]: a synchronous rtnetlink client (veth pairs, addresses, routes, neighbours)
//!   and the [`netlink::NeighbourResolver`] that gives the engine its next hops' MACs.
//!
//! The control plane never touches a frame: it publishes tables to the data path.

pub mod agent;
pub mod api;
pub mod capture;
pub mod cli;
pub mod cni;
pub mod compile;
pub mod cores;
pub mod demo;
pub mod inspect;
pub mod metrics;
pub mod netlink;
pub mod objects;
pub mod overlay;
pub mod source;
