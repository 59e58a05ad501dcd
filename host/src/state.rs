//! What one component instance owns while it runs: the `T` of its
//! `wasmtime::Store<T>`.
//!
//! A store lives for exactly one request (or one message), so everything in
//! here is per-instance: the WASI context and resource table, and one field
//! per host capability. Dropping the store drops it all, which is what makes
//! a fresh instance per request a sandbox between requests.
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::key_value::KeyValueInstance;
use crate::capabilities::outbound_http::OutboundHttpInstance;
use crate::capabilities::postgres::PostgresInstance;
use crate::capabilities::redis::RedisInstance;
use crate::capabilities::sqlite::SqliteInstance;
use crate::capabilities::variables::VariablesInstance;
use crate::telemetry::RequestContext;

pub struct InstanceState {
    pub component_id: Arc<str>,
    /// The HTTP request this instance serves (its id and trace), if any.
    pub request: Option<Arc<RequestContext>>,
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outbound_http: OutboundHttpInstance,
    pub variables: VariablesInstance,
    pub key_value: KeyValueInstance,
    pub sqlite: SqliteInstance,
    pub postgres: PostgresInstance,
    pub redis: RedisInstance,
    pub limits: StoreLimits,
}

impl InstanceState {
    /// Sets the request this instance serves; outbound HTTP passes its
    /// trace (and, when chaining, its id) on.
    pub fn set_request(&mut self, request: Arc<RequestContext>) {
        self.outbound_http.set_request(request.clone());
        self.request = Some(request);
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound_http }
    }
}
