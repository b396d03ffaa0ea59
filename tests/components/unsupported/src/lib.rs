//! A component the host must refuse to load: it imports `fermyon:spin/mqtt@2.0.0`, an interface
//! gyre-host does not provide. The import only survives linking because the handler really calls
//! it; the call never runs.

use spin_sdk::http::{Request, Response};
use spin_sdk::mqtt::{Connection, Qos};

#[spin_sdk::http_component]
fn handle(req: Request) -> Response {
    let published = Connection::open("mqtt://127.0.0.1:1883", "", "", 30)
        .and_then(|connection| connection.publish("gyre/test", &req.into_body(), Qos::AtMostOnce));
    match published {
        Ok(()) => Response::new(200, "published"),
        Err(error) => Response::new(500, format!("{error:?}")),
    }
}
