//! The device bridge's control API, as the registry calls it: desired-property pushes, direct
//! methods, and notices that cloud-to-device messages wait. The contract (paths, bodies,
//! errors) is `gyre_domain::bridge`'s; the bridge's address is the Spin variable
//! `bridge_control_url`, allowed in `spin.toml`'s `allowed_outbound_hosts`.
//!
//! A bridge that cannot be reached is [`ControlFailure::Unavailable`]: callers that only push
//! (desired properties, C2D notices) ignore it, as the device catches up when it next connects.

use gyre_domain::bridge::{
    ControlError, Delivery, DesiredPush, MethodInvocation, MethodResult, INTERNAL_SECRET_HEADER,
};
use gyre_domain::percent;
use serde::{de::DeserializeOwned, Serialize};
use spin_sdk::http::{Method, Request, Response};

/// Why a control call did not give its answer.
#[derive(Debug)]
pub enum ControlFailure {
    /// The bridge answered with an error (`deviceNotConnected`, `timeout`, ...) and its status.
    Refused { status: u16, error: ControlError },
    /// No bridge answered, or it answered something that is not the contract.
    Unavailable(String),
}

/// `POST /control/devices/{id}/twin/desired`.
pub fn push_desired(device_id: &str, push: &DesiredPush) -> Result<Delivery, ControlFailure> {
    call(&device_path(device_id, "twin/desired"), push)
}

/// `POST /control/devices/{id}/methods`: returns once the device answered or a timeout passed.
pub fn invoke_method(
    device_id: &str,
    invocation: &MethodInvocation,
) -> Result<MethodResult, ControlFailure> {
    call(&device_path(device_id, "methods"), invocation)
}

/// `POST /control/devices/{id}/messages`: cloud-to-device messages wait for the device.
pub fn notify_messages(device_id: &str) -> Result<Delivery, ControlFailure> {
    call(&device_path(device_id, "messages"), &serde_json::json!({}))
}

fn device_path(device_id: &str, rest: &str) -> String {
    format!("/control/devices/{}/{rest}", percent::encode(device_id))
}

fn call<B: Serialize, R: DeserializeOwned>(path: &str, body: &B) -> Result<R, ControlFailure> {
    let unavailable = |what: String| ControlFailure::Unavailable(what);
    let base = spin_sdk::variables::get("bridge_control_url")
        .map_err(|err| unavailable(format!("the bridge_control_url variable: {err}")))?;
    let secret = spin_sdk::variables::get("internal_secret")
        .map_err(|err| unavailable(format!("the internal_secret variable: {err}")))?;
    let body = serde_json::to_vec(body).map_err(|err| unavailable(err.to_string()))?;
    let request = Request::builder()
        .method(Method::Post)
        .uri(format!("{}{path}", base.trim_end_matches('/')))
        .header("content-type", "application/json")
        .header(INTERNAL_SECRET_HEADER, secret)
        .body(body)
        .build();
    let response: Response = spin_sdk::http::run(spin_sdk::http::send(request))
        .map_err(|err| unavailable(format!("the bridge at {base}: {err}")))?;
    let status = *response.status();
    if (200..300).contains(&status) {
        return serde_json::from_slice(response.body())
            .map_err(|err| unavailable(format!("the bridge's answer to {path}: {err}")));
    }
    match serde_json::from_slice::<ControlError>(response.body()) {
        Ok(error) => Err(ControlFailure::Refused { status, error }),
        Err(_) => Err(unavailable(format!(
            "the bridge answered {status} to {path}: {}",
            String::from_utf8_lossy(response.body())
        ))),
    }
}
