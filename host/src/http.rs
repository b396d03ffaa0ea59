//! Serving HTTP: the accept loop, routing a request to a component, Spin's request headers, a
//! fresh instance per request under a deadline, service chaining, and the metrics listener.
//!
//! Shutdown order: stop accepting, let in-flight connections finish (each request is bounded by
//! the request deadline), then return.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use wasmtime::Store;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpCtx, WasiHttpView};

use crate::app::{App, AppInner};
use crate::kv::KvInstance;
use crate::metrics::UNMATCHED;
use crate::outbound::{ChainTarget, OutboundHooks};
use crate::routes::RouteMatch;
use crate::sqlite::SqliteInstance;
use crate::state::InstanceState;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, client_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req, client_addr).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%client_addr, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let deadline = app.inner.request_timeout + std::time::Duration::from_secs(1);
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown deadline; closing them");
    }
    Ok(())
}

/// Serves `GET /metrics` in Prometheus' text format on its own listener.
pub async fn serve_metrics(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.context("accepting a metrics connection")?,
            () = &mut shutdown => return Ok(()),
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move {
                let response = if req.uri().path() == "/metrics" {
                    Response::builder()
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::new(Bytes::from(app.render_metrics())))
                } else {
                    Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Full::new(Bytes::from_static(b"Not Found")))
                };
                Ok::<_, Infallible>(response.expect("static response parts are valid"))
            }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text_response(status: StatusCode, text: &'static str) -> Response<WasiBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

impl App {
    /// Routes one request from a client and answers it; never fails (errors become 404 or 500).
    async fn handle<B>(&self, mut req: Request<B>, client_addr: SocketAddr) -> Response<WasiBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpError>,
    {
        let started = Instant::now();
        let inner = &self.inner;
        let path = req.uri().path().to_string();
        let Some((pattern, idx, route_match)) = inner.router.route(&path) else {
            inner
                .metrics
                .record(UNMATCHED, "", 404, false, started.elapsed());
            return text_response(StatusCode::NOT_FOUND, "Not Found");
        };
        let component = &inner.components[*idx];
        let full_url = full_url(&req);
        set_spin_headers(
            req.headers_mut(),
            SpinHeaders {
                full_url: &full_url,
                matched_route: pattern.raw(),
                component_route: &pattern.component_route(),
                route_match: &route_match,
                client_addr: Some(client_addr),
            },
        );
        let (response, failed) = match inner.invoke(*idx, req).await {
            Ok(response) => (response, false),
            Err(err) => {
                tracing::error!(component = %component.id, route = pattern.raw(), error = %format!("{err:#}"), "request failed");
                (
                    text_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
                    true,
                )
            }
        };
        inner.metrics.record(
            pattern.raw(),
            &component.id,
            response.status().as_u16(),
            failed,
            started.elapsed(),
        );
        response
    }
}

/// The values of Spin's `spin-*` request headers.
struct SpinHeaders<'a> {
    full_url: &'a str,
    matched_route: &'a str,
    component_route: &'a str,
    route_match: &'a RouteMatch,
    client_addr: Option<SocketAddr>,
}

fn full_url<B>(req: &Request<B>) -> String {
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".to_string());
    let scheme = req.uri().scheme_str().unwrap_or("http");
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("{scheme}://{host}{path_and_query}")
}

fn set_spin_headers(headers: &mut http::HeaderMap, values: SpinHeaders<'_>) {
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    };
    set("spin-full-url", values.full_url);
    set("spin-path-info", &values.route_match.path_info);
    set("spin-matched-route", values.matched_route);
    set("spin-raw-component-route", values.matched_route);
    set("spin-component-route", values.component_route);
    set("spin-base-path", "/");
    if let Some(addr) = values.client_addr {
        set("spin-client-addr", &addr.to_string());
    }
    for (name, value) in &values.route_match.params {
        set(&format!("spin-path-match-{name}"), value);
    }
}

impl AppInner {
    /// Runs one request in a fresh instance of component `idx`, under the request deadline.
    async fn invoke<B>(
        self: &Arc<Self>,
        idx: usize,
        req: Request<B>,
    ) -> anyhow::Result<Response<WasiBody>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpError>,
    {
        let component = &self.components[idx];
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .envs(&component.environment);
        // Components reach the network only through wasi:http and its allow-list.
        wasi.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let state = InstanceState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            hooks: OutboundHooks {
                component_id: component.id.clone(),
                allowed: component.allowed_hosts.clone(),
                chain: Arc::new(Chainer { app: self.clone() }),
            },
            kv: KvInstance {
                stores: self.kv.clone(),
                allowed: component.kv_labels.clone(),
                n_open: 0,
            },
            sqlite: SqliteInstance {
                databases: self.sqlite.clone(),
                allowed: component.sqlite_labels.clone(),
                n_open: 0,
            },
            variables: component.variables.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        // Yield to the executor at every epoch tick; the deadline below stops the instance.
        store.epoch_deadline_async_yield_and_update(1);

        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        let deadline = self.request_timeout;
        let id = component.id.clone();
        // A task of its own, so that the guest may go on writing the body after it has sent the
        // response head; the deadline covers the whole run, body included.
        let task = tokio::spawn(async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout(deadline, run).await {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(_) => Err(anyhow::anyhow!(
                    "component `{id}` exceeded the request deadline of {deadline:?}"
                )),
            }
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(anyhow::anyhow!(
                "the component answered with an error: {code:?}"
            )),
            Err(_) => {
                let err = match task.await {
                    Ok(Ok(())) => {
                        anyhow::anyhow!("the component returned without setting a response")
                    }
                    Ok(Err(err)) => err,
                    Err(join) => anyhow::Error::new(join),
                };
                Err(err.context(format!("component `{}`", component.id)))
            }
        }
    }
}

/// Service chaining: `http://<component>.spin.internal/...` from a guest, served in process.
struct Chainer {
    app: Arc<AppInner>,
}

impl ChainTarget for Chainer {
    fn dispatch(
        &self,
        component_id: &str,
        mut request: Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<WasiBody>, HttpError>> + Send>> {
        let app = self.app.clone();
        let Some(&idx) = app.by_id.get(component_id) else {
            tracing::warn!(
                component = component_id,
                "service chaining to a component the app does not have"
            );
            return Box::pin(async { Err(HttpError::DestinationNotFound) });
        };
        Box::pin(async move {
            let started = Instant::now();
            let component = &app.components[idx];
            let path = request.uri().path().to_string();
            // A chained request carries the headers its target would see if routed; a private
            // component, or a path outside its route, sees the whole path as path info.
            let routed = component
                .route
                .as_ref()
                .and_then(|route| route.matches(&path).map(|m| (route, m)));
            let (matched, component_route, route_match) = match routed {
                Some((route, m)) => (route.raw().to_string(), route.component_route(), m),
                None => (
                    "/...".to_string(),
                    String::new(),
                    RouteMatch {
                        path_info: path,
                        params: Default::default(),
                    },
                ),
            };
            let full_url = full_url(&request);
            set_spin_headers(
                request.headers_mut(),
                SpinHeaders {
                    full_url: &full_url,
                    matched_route: &matched,
                    component_route: &component_route,
                    route_match: &route_match,
                    client_addr: None,
                },
            );
            let result = app.invoke(idx, request).await;
            let (status, failed) = match &result {
                Ok(response) => (response.status().as_u16(), false),
                Err(_) => (500, true),
            };
            app.metrics
                .record(&matched, &component.id, status, failed, started.elapsed());
            result.map_err(|err| {
                tracing::error!(component = %component.id, error = %format!("{err:#}"), "chained request failed");
                HttpError::InternalError(Some(format!("{err:#}")))
            })
        })
    }
}
