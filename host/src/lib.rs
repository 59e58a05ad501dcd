//! bazaar: a Spin-compatible WebAssembly host.
//!
//! The crate is organised by concept, one a file:
//! - [`manifest`] reads spin.toml; [`runtime_config`] reads the runtime config;
//! - [`engine`] owns the wasmtime engine and the compile cache;
//! - [`app`] turns a manifest into loaded, pre-instantiated components;
//! - [`state`] is what one instance owns while it runs;
//! - [`capabilities`] are the host interfaces components import, each with
//!   the same shape (config, per-instance state, host implementation, tests);
//! - [`trigger`] feeds events (HTTP requests) to components;
//! - [`swap`] replaces a component while the app serves; [`watch`] does it
//!   when a wasm file changes, [`rebuild`] when its sources do;
//! - [`admin`] is the operators' listener (swap, health, [`metrics`]);
//! - [`telemetry`] is logging, request ids and traces (W3C, OTLP);
//! - [`cli`] is the `bazaar` command line.
pub mod admin;
pub mod app;
pub mod bindings;
pub mod bus;
pub mod capabilities;
pub mod cli;
pub mod engine;
pub mod manifest;
pub mod metrics;
pub mod rebuild;
pub mod routing;
pub mod runtime_config;
pub mod state;
pub mod swap;
pub mod telemetry;
pub mod trigger;
pub mod watch;
