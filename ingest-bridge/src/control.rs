//! The control API: the Spin application calling the bridge (`--control-listen`, plain
//! HTTP/1.1 on loopback by default). The contract (paths, bodies, errors) is
//! `gyre_domain::bridge`'s; this module serves it over the live sessions (`session::Sessions`)
//! and their downlinks (`downlink`).
//!
//! Every request carries the internal secret (`x-gyre-internal-secret`), else 401 before the
//! body is read. Bodies are capped ([`MAX_BODY_BYTES`]: IoT Hub's 256 KiB payload limits plus
//! room for the JSON around them). A direct method's call holds its HTTP request open until the
//! device answers or a timeout passes; nothing polls: the call waits on the session map's
//! subscription notifications, then on a oneshot.
//!
//! Not owned here: what the device receives (the session publishes, checking its own
//! subscriptions) or which rid answers which call (`downlink::PendingMethods`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gyre_domain::bridge::{
    ControlError, Delivery, DesiredPush, MethodInvocation, INTERNAL_SECRET_HEADER,
};
use gyre_domain::device::DeviceId;
use gyre_domain::mqtt::MethodName;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::downlink::{self, Downlink, MethodCall};
use crate::session::Sessions;

/// The largest request body: a 256 KiB payload (IoT Hub's limit for methods and twin patches)
/// with the JSON around it.
pub const MAX_BODY_BYTES: usize = 256 * 1024 + 8 * 1024;

/// IoT Hub's longest connection and response timeouts for a direct method, in seconds.
const MAX_TIMEOUT_SECS: u32 = 300;

/// How long a push waits for room in a session's downlink channel before it counts as not
/// delivered (the device then catches up through its twin).
const PUSH_WAIT: Duration = Duration::from_secs(2);

/// Serves the control API on `listener` until `shutdown` resolves, then closes its
/// connections (calls waiting for a device fail with them).
pub async fn run(
    listener: TcpListener,
    sessions: Arc<Sessions>,
    secret: String,
    shutdown: impl Future,
) {
    let control = Arc::new(Control { sessions, secret });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(cause = %err, "control API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let control = Arc::clone(&control);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let control = Arc::clone(&control);
                async move { Ok::<_, Infallible>(control.handle(request).await) }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(cause = %err, "control API connection ended");
            }
        });
    }
    connections.shutdown().await;
}

struct Control {
    sessions: Arc<Sessions>,
    secret: String,
}

/// What a request asks for.
enum Action {
    Desired,
    Method,
    Messages,
}

type Answer = Response<Full<Bytes>>;

impl Control {
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        let authorized = request
            .headers()
            .get(INTERNAL_SECRET_HEADER)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), self.secret.as_bytes()));
        if !authorized {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the internal secret is missing or wrong",
            );
        }
        let Some((device_id, action)) = route(request.uri().path()) else {
            return error(
                StatusCode::NOT_FOUND,
                "notFound",
                "no such control endpoint",
            );
        };
        if request.method() != Method::POST {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "badRequest",
                "the control API takes POST only",
            );
        }
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "badRequest",
                    "the body is larger than 264 KiB",
                )
            }
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "badRequest",
                    &format!("reading the body: {err}"),
                )
            }
        };
        match action {
            Action::Desired => match parse::<DesiredPush>(&body) {
                Ok(push) => self.push_desired(&device_id, push).await,
                Err(answer) => *answer,
            },
            Action::Method => match parse::<MethodInvocation>(&body) {
                Ok(invocation) => self.invoke(&device_id, invocation).await,
                Err(answer) => *answer,
            },
            Action::Messages => self.messages_waiting(&device_id).await,
        }
    }

    async fn push_desired(&self, device_id: &DeviceId, push: DesiredPush) -> Answer {
        let body = match serde_json::to_vec(&push.patch) {
            Ok(body) => Bytes::from(body),
            Err(err) => {
                return error(StatusCode::BAD_REQUEST, "badRequest", &err.to_string());
            }
        };
        let message = Downlink::Desired(Box::new((push.version, body)));
        let delivered = self
            .send(device_id, downlink::DESIRED, message)
            .await
            .is_some();
        json(StatusCode::OK, &Delivery { delivered })
    }

    async fn messages_waiting(&self, device_id: &DeviceId) -> Answer {
        let delivered = self
            .send(device_id, downlink::C2D, Downlink::C2dWaiting)
            .await
            .is_some();
        json(StatusCode::OK, &Delivery { delivered })
    }

    /// Hands `message` to the session of `device_id` if it subscribed to `need`; its serial.
    async fn send(&self, device_id: &DeviceId, need: u8, message: Downlink) -> Option<u64> {
        let (serial, session) = self.sessions.downlink(device_id.as_str(), need)?;
        match tokio::time::timeout(PUSH_WAIT, session.send(message)).await {
            Ok(Ok(())) => Some(serial),
            Ok(Err(_closed)) => None,
            Err(_elapsed) => {
                tracing::warn!(%device_id, "downlink full; push not delivered");
                None
            }
        }
    }

    async fn invoke(&self, device_id: &DeviceId, invocation: MethodInvocation) -> Answer {
        let name = match MethodName::parse(&invocation.method_name) {
            Ok(name) => name,
            Err(err) => return error(StatusCode::BAD_REQUEST, "badRequest", &err.to_string()),
        };
        let payload = match serde_json::to_vec(&invocation.payload) {
            Ok(payload) => Bytes::from(payload),
            Err(err) => return error(StatusCode::BAD_REQUEST, "badRequest", &err.to_string()),
        };
        let not_connected = || {
            error(
                StatusCode::NOT_FOUND,
                "deviceNotConnected",
                &format!("device {device_id} is not connected and subscribed to direct methods"),
            )
        };
        let seconds = |value: u32| Duration::from_secs(u64::from(value.min(MAX_TIMEOUT_SECS)));
        let connected_by = Instant::now() + seconds(invocation.connection_timeout);
        let Some((serial, session)) = self
            .sessions
            .wait_for_downlink(device_id.as_str(), downlink::METHODS, connected_by)
            .await
        else {
            return not_connected();
        };
        // Registered before it is published: the answer may come back at once.
        let mut call = self.sessions.methods.start(serial);
        let rid = call.rid.clone();
        let message = Downlink::Method(Box::new(MethodCall { name, rid, payload }));
        let answered_by = Instant::now() + seconds(invocation.response_timeout);
        match tokio::time::timeout_at(answered_by, session.send(message)).await {
            Ok(Ok(())) => {}
            Ok(Err(_closed)) => return not_connected(),
            Err(_elapsed) => return timeout(),
        }
        // `call` lives to the end: its drop forgets the call, answered or not.
        match tokio::time::timeout_at(answered_by, &mut call.answer).await {
            Ok(Ok(result)) => json(StatusCode::OK, &result),
            // The session ended (or unsubscribed) before the device answered.
            Ok(Err(_dropped)) => not_connected(),
            Err(_elapsed) => timeout(),
        }
    }
}

fn timeout() -> Answer {
    error(
        StatusCode::GATEWAY_TIMEOUT,
        "timeout",
        "the device did not answer within the response timeout",
    )
}

/// `/control/devices/{deviceId}/{action}`, the id percent-decoded and valid.
fn route(path: &str) -> Option<(DeviceId, Action)> {
    let rest = path.strip_prefix("/control/devices/")?;
    let (id, action) = rest.split_once('/')?;
    let action = match action {
        "twin/desired" => Action::Desired,
        "methods" => Action::Method,
        "messages" => Action::Messages,
        _ => return None,
    };
    let id = gyre_domain::percent::decode(id)?;
    Some((DeviceId::parse(&id).ok()?, action))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Answer>> {
    serde_json::from_slice(body).map_err(|err| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "badRequest",
            &format!("the body is not the contract's JSON: {err}"),
        ))
    })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    let body = serde_json::to_vec(value).expect("control answers serialise");
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    json(
        status,
        &ControlError {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guessed secret was right.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_a_valid_device_and_a_known_action() {
        assert!(matches!(
            route("/control/devices/dev-1/methods"),
            Some((_, Action::Method))
        ));
        assert!(matches!(
            route("/control/devices/dev%201/twin/desired"),
            None | Some((_, Action::Desired))
        ));
        assert!(matches!(
            route("/control/devices/dev-1/messages"),
            Some((_, Action::Messages))
        ));
        assert!(route("/control/devices/dev-1/other").is_none());
        assert!(route("/control/devices/").is_none());
        assert!(route("/internal/tick").is_none());
    }

    #[test]
    fn the_secret_must_match_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret-longer", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
