//! Where the objects come from. Each source produces a [`DesiredState`](crate::objects::DesiredState)
//! and publishes every new one through a `tokio::sync::watch` channel, so the agent reacts to a
//! file and to an API server the same way.
//!
//! - [`file`](mod@file): `--source FILE`, a YAML/JSON file polled for changes.

pub mod file;
