//! Host-side bindings for the Spin capabilities in `wit/world.wit`.
//!
//! WASI 0.2 (cli, io, clocks, random, filesystem, sockets, http) comes from
//! wasmtime-wasi and wasmtime-wasi-http; everything Spin adds on top is
//! generated here from the WIT vendored out of spin-sdk, so the host and the
//! guest SDK agree on every type by construction.
//!
//! Every import is `async` (a host call may wait on a database or the network
//! without blocking a tokio worker) and `trappable` (a broken host invariant
//! traps the calling instance instead of being smuggled into a WIT error).
wasmtime::component::bindgen!({
    path: "../wit",
    world: "bazaar:host/spin-capabilities",
    imports: { default: async | trappable },
});

/// The export the Redis trigger calls.
pub mod redis_trigger {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "bazaar:host/redis-trigger",
        exports: { default: async },
    });
}
