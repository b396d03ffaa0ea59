//! The registry's `/internal/registry/...` endpoints for the device bridge (internal secret,
//! never API tokens): what a device may connect with.

use gyre_component::{internal, json_response, path_param, ApiError, Ctx};
use gyre_domain::bridge::DeviceConnection;
use gyre_domain::device::DeviceId;
use gyre_domain::store::devices;
use spin_sdk::http::{Params, Request, Response, Router};

pub fn routes(router: &mut Router) {
    router.get(
        "/internal/registry/devices/:device_id/connection",
        internal(connection),
    );
}

/// `GET /internal/registry/devices/{id}/connection`: whether the device may connect, and the
/// keys its SAS token may be signed with (the same keys `/credentials` shows).
fn connection(ctx: &mut Ctx, _request: Request, params: Params) -> Result<Response, ApiError> {
    let raw = path_param(&params, "device_id")?;
    let device_id = DeviceId::parse(&raw).map_err(|error| ApiError::BadRequest {
        message: format!("`{raw}`: {error}"),
    })?;
    // Plain reads, no transaction: this is on the bridge's connect path, and a group changing
    // between them only means the bridge asks again on the next connection.
    let device = devices::get(&mut ctx.sql, &device_id)?.ok_or_else(|| ApiError::NotFound {
        message: format!("device `{device_id}` does not exist"),
    })?;
    let keys = devices::connection_keys(&mut ctx.sql, &device)?;
    let connection = DeviceConnection::new(&device, keys.as_ref());
    json_response(200, &connection)
}
