//! The smallest useful HTTP component: answers 200 "hello" and imports nothing but WASI, so the
//! benchmark compares gyre-host with `wasmtime serve` on equal terms.

use spin_sdk::http::{Request, Response};

#[spin_sdk::http_component]
fn handle(_req: Request) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello")
        .build()
}
