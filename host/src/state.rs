//! The per-request state of one component instance (the `T` of `Store<T>`), and the
//! `fermyon:spin/variables` implementation, which needs nothing but this state.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings::fermyon::spin::variables::{self, Error as VariablesError};
use crate::kv::KvInstance;
use crate::outbound::OutboundHooks;
use crate::sqlite::SqliteInstance;
use crate::variables::{ComponentVariables, GetError};

/// Everything one instance may touch while it serves one request. Built fresh for each request
/// and dropped with the instance; only the `Arc`s are shared.
pub struct InstanceState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub hooks: OutboundHooks,
    pub kv: KvInstance,
    pub sqlite: SqliteInstance,
    pub variables: Arc<ComponentVariables>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl variables::Host for InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, VariablesError>> {
        Ok(self.variables.get(&name).map_err(|err| match err {
            GetError::InvalidName(why) => VariablesError::InvalidName(why),
            GetError::Undefined(why) => VariablesError::Undefined(why),
        }))
    }
}
