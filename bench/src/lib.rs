//! kxdp benchmarks: generator → node → sink in network namespaces, the kernel path and kxdp
//! measured in the same run on the same topology. The binary is `kxdp-bench`.
//!
//! Module map:
//! - [`scenario`]: the measurement loop every scenario shares, and one module per scenario
//!   ([`scenario::forward`]: plain IPv4 forwarding).
//! - [`generator`]: a generator thread inside the generator namespace, live frames or the AF_XDP
//!   fallback, with a running count of what it offered.
//! - [`livegen`]: the XDP live-frames generator (`BPF_PROG_TEST_RUN`, `XDP_TX`).
//! - [`xskgen`]: the AF_XDP copy-mode transmit generator, the fallback.
//! - [`napi`]: threaded veth NAPI with pinned kernel threads, so each core's work is chosen.
//! - [`cpu`]: core busy time, thread run time, pinning.
//! - [`machine`]: CPU model, CPU count, kernel release.
//! - [`report`]: the result types, their JSON form and the printed table.

pub mod cpu;
pub mod generator;
pub mod livegen;
pub mod machine;
pub mod napi;
pub mod report;
pub mod scenario;
pub mod xskgen;
