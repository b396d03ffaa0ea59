//! Device commands as IoT Central's REST API runs them (`POST /devices/{id}/commands/{name}`
//! and the component form): the request body, its validation against the device template,
//! the direct-method call it becomes, what came of it, and the history record's wire shape.
//! [`c2d`] holds the cloud-to-device message rules.
//!
//! Decisions where IoT Central is silent or where we chose:
//! - A device without a template, a component the template lacks, or a command the component
//!   lacks: 404 (the command resource does not exist for this device). Bad timeouts and a
//!   request that does not fit the command's request schema: 400, naming the field or path.
//! - A command that declares a request needs one (`null` fits no schema); a command without a
//!   request schema refuses one (it would be dropped silently otherwise).
//! - The read-only fields (`id`, `response`, `responseCode`) are accepted in a body and ignored,
//!   so a client may post back what it read.
//! - Failures keep IoT Hub's statuses for direct methods: device not connected 404
//!   (`DeviceNotOnline`), no answer in time 504 (`GatewayTimeout`); a bridge that cannot be
//!   reached 503 (`ServiceUnavailable`), one that answers outside the contract 502
//!   (`BadGateway`). A device's own status (even 500) is a successful call: 201 with
//!   `responseCode`.
//!
//! Owns no IO: the component calls the bridge and hands the [`Outcome`] back here.

pub mod c2d;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::dtdl::{validate_value, DeviceModel, Problem};
use crate::time::Timestamp;

/// `connectionTimeout` bounds, seconds (IoT Central: 0–30, default 0).
pub const CONNECTION_TIMEOUT_RANGE: (u32, u32) = (0, 30);
pub const DEFAULT_CONNECTION_TIMEOUT: u32 = 0;
/// `responseTimeout` bounds, seconds (IoT Central: 5–30, default 30).
pub const RESPONSE_TIMEOUT_RANGE: (u32, u32) = (5, 30);
pub const DEFAULT_RESPONSE_TIMEOUT: u32 = 30;

/// The body of `POST .../commands/{name}` (IoT Central's `DeviceCommand`, writable part).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandBody {
    /// Seconds; integers only (serde refuses `1.5` with its own message).
    #[serde(default)]
    pub connection_timeout: Option<i64>,
    #[serde(default)]
    pub response_timeout: Option<i64>,
    /// Absent and `null` are the same: no payload.
    #[serde(default)]
    pub request: Option<Json>,
    // Read-only in IoT Central; accepted and ignored.
    #[serde(default)]
    pub id: Option<Json>,
    #[serde(default)]
    pub response: Option<Json>,
    #[serde(default)]
    pub response_code: Option<Json>,
}

/// Which command: `name` in the root Interface (`component: None`) or in a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandTarget {
    pub component: Option<String>,
    pub name: String,
}

impl CommandTarget {
    /// The direct method's name on the wire: `name`, or `component*name` (IoT Plug and Play).
    pub fn method_name(&self) -> String {
        match &self.component {
            None => self.name.clone(),
            Some(component) => format!("{component}*{}", self.name),
        }
    }
}

/// A validated command, ready to become a direct-method call.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub target: CommandTarget,
    /// `null` when the command takes no request.
    pub request: Json,
    pub connection_timeout: u32,
    pub response_timeout: u32,
}

/// Why a command request is refused before anything is sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the device has no device template, so it has no commands")]
    NoTemplate,
    #[error("the device's template has no component `{0}`")]
    UnknownComponent(String),
    #[error(
        "the device's template has no command `{name}`{}",
        in_component(component)
    )]
    UnknownCommand {
        component: Option<String>,
        name: String,
    },
    #[error("`{field}` must be a whole number of seconds from {min} to {max}, not {value}")]
    BadTimeout {
        field: &'static str,
        value: i64,
        min: u32,
        max: u32,
    },
    #[error("the command `{0}` takes a request: send it in `request`")]
    MissingRequest(String),
    #[error("the command `{0}` takes no request, but the body has one")]
    UnexpectedRequest(String),
    #[error("`request` does not fit the command's request schema: {}", list(.0))]
    InvalidRequest(Vec<Problem>),
}

impl CommandError {
    /// 404 for what does not exist, 400 for what is wrong with the body.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            CommandError::NoTemplate
                | CommandError::UnknownComponent(_)
                | CommandError::UnknownCommand { .. }
        )
    }
}

fn in_component(component: &Option<String>) -> String {
    component
        .as_deref()
        .map(|component| format!(" in component `{component}`"))
        .unwrap_or_default()
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| {
            format!(
                "{}: {}",
                problem.path.replacen('$', "$.request", 1),
                problem.message
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a command request against the device's model (`None`: the device has no template)
/// and the timeout ranges; the invocation to send.
pub fn prepare(
    model: Option<&DeviceModel>,
    target: CommandTarget,
    body: &CommandBody,
) -> Result<Invocation, CommandError> {
    let model = model.ok_or(CommandError::NoTemplate)?;
    if let Some(component) = &target.component {
        if model.component(component).is_none() {
            return Err(CommandError::UnknownComponent(component.clone()));
        }
    }
    let command = model
        .command(target.component.as_deref(), &target.name)
        .ok_or_else(|| CommandError::UnknownCommand {
            component: target.component.clone(),
            name: target.name.clone(),
        })?;
    let connection_timeout = timeout(
        "connectionTimeout",
        body.connection_timeout,
        DEFAULT_CONNECTION_TIMEOUT,
        CONNECTION_TIMEOUT_RANGE,
    )?;
    let response_timeout = timeout(
        "responseTimeout",
        body.response_timeout,
        DEFAULT_RESPONSE_TIMEOUT,
        RESPONSE_TIMEOUT_RANGE,
    )?;
    let request = body.request.clone().unwrap_or(Json::Null);
    match (&command.request, request.is_null()) {
        (Some(_), true) => return Err(CommandError::MissingRequest(target.name)),
        (None, false) => return Err(CommandError::UnexpectedRequest(target.name)),
        (Some(payload), false) => {
            validate_value(&payload.schema, &request).map_err(CommandError::InvalidRequest)?
        }
        (None, true) => {}
    }
    Ok(Invocation {
        target,
        request,
        connection_timeout,
        response_timeout,
    })
}

fn timeout(
    field: &'static str,
    value: Option<i64>,
    default: u32,
    (min, max): (u32, u32),
) -> Result<u32, CommandError> {
    let Some(value) = value else {
        return Ok(default);
    };
    u32::try_from(value)
        .ok()
        .filter(|seconds| (min..=max).contains(seconds))
        .ok_or(CommandError::BadTimeout {
            field,
            value,
            min,
            max,
        })
}

/// What came of a call, as the history keeps it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The device answered with `status` (its `responseCode`) and a payload.
    Responded { status: i64, payload: Json },
    /// The device was not connected and subscribed within `connectionTimeout`.
    NotConnected,
    /// The device did not answer within `responseTimeout`.
    TimedOut,
    /// No bridge answered (not running, not reachable).
    Unavailable,
    /// The bridge answered something outside the contract.
    BadGateway,
}

impl Outcome {
    /// The stored `outcome` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Responded { .. } => "responded",
            Outcome::NotConnected => "deviceNotOnline",
            Outcome::TimedOut => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::BadGateway => "badGateway",
        }
    }

    /// The `responseCode` shown in the history: the device's status, or the HTTP status the
    /// failed call was answered with.
    pub fn response_code(&self) -> i64 {
        match self {
            Outcome::Responded { status, .. } => *status,
            other => i64::from(other.failure().map_or(500, |failure| failure.status)),
        }
    }

    /// How a failed call is answered; `None` for a device's answer (201).
    pub fn failure(&self) -> Option<Failure> {
        let (status, code, message) = match self {
            Outcome::Responded { .. } => return None,
            Outcome::NotConnected => (
                404,
                "DeviceNotOnline",
                "the device is not connected (or does not listen for commands)",
            ),
            Outcome::TimedOut => (
                504,
                "GatewayTimeout",
                "the device did not answer within the response timeout",
            ),
            Outcome::Unavailable => (
                503,
                "ServiceUnavailable",
                "the device bridge cannot be reached; try again later",
            ),
            Outcome::BadGateway => (
                502,
                "BadGateway",
                "the device bridge answered unexpectedly; try again later",
            ),
        };
        Some(Failure {
            status,
            code,
            message,
        })
    }
}

/// The HTTP answer to a failed call, in IoT Central's error shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

/// One execution, as stored in the command history.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRecord {
    /// A version 4 UUID, made by the caller from random bytes.
    pub id: String,
    pub device_id: String,
    pub target: CommandTarget,
    pub executed_at: Timestamp,
    pub connection_timeout: u32,
    pub response_timeout: u32,
    pub request: Json,
    pub outcome: Outcome,
}

impl CommandRecord {
    pub fn new(
        id: String,
        device_id: &str,
        invocation: Invocation,
        outcome: Outcome,
        executed_at: Timestamp,
    ) -> CommandRecord {
        CommandRecord {
            id,
            device_id: device_id.to_owned(),
            target: invocation.target,
            executed_at,
            connection_timeout: invocation.connection_timeout,
            response_timeout: invocation.response_timeout,
            request: invocation.request,
            outcome,
        }
    }

    /// IoT Central's `DeviceCommand`.
    pub fn to_wire(&self) -> DeviceCommand {
        let response = match &self.outcome {
            Outcome::Responded { payload, .. } if !payload.is_null() => Some(payload.clone()),
            _ => None,
        };
        DeviceCommand {
            id: self.id.clone(),
            connection_timeout: self.connection_timeout,
            response_timeout: self.response_timeout,
            request: (!self.request.is_null()).then(|| self.request.clone()),
            response,
            response_code: self.outcome.response_code(),
        }
    }

    /// The `device_events` body of a `commandExecution` event.
    pub fn event_body(&self) -> Json {
        let wire = self.to_wire();
        serde_json::json!({
            "id": self.id,
            "component": self.target.component,
            "name": self.target.name,
            "request": wire.request,
            "response": wire.response,
            "responseCode": wire.response_code,
            "outcome": self.outcome.as_str(),
        })
    }
}

/// IoT Central's `DeviceCommand`, as POST answers it and the history lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCommand {
    pub id: String,
    pub connection_timeout: u32,
    pub response_timeout: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Json>,
    pub response_code: i64,
}

#[cfg(test)]
mod tests;
