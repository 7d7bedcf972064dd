//! What every service shares around its own routes: `/health`, `/ready`, failure injection,
//! a log line per request, serving with graceful shutdown, and the binaries' `main`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{Common, ConfigError, Env};
use crate::error::ApiError;
use crate::fail::{self, FailInjector};
use crate::trace::TraceContext;

/// Whether the service can serve its API (e.g. its store is open).
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// One service, before it listens.
pub struct App {
    pub name: &'static str,
    pub common: Common,
    /// The service's own routes, with their state applied.
    pub api: Router,
    pub ready: ReadyCheck,
}

impl App {
    /// The full router: the API behind failure injection, plus `/health` and `/ready`
    /// (never failed on purpose), all logged.
    pub fn into_router(self) -> Router {
        let injector = Arc::new(FailInjector::new(self.common.fail.clone()));
        let api = self
            .api
            .fallback(no_route)
            .layer(middleware::from_fn_with_state(injector, fail::middleware));
        let ready = self.ready;
        Router::new()
            .route(
                "/health",
                get(|| async { axum::Json(json!({"status": "ok"})) }),
            )
            .route("/ready", get(move || readiness(ready.clone())))
            .merge(api)
            .layer(middleware::from_fn_with_state(self.name, log_request))
    }
}

async fn readiness(ready: ReadyCheck) -> Response {
    if ready() {
        axum::Json(json!({"status": "ready"})).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the store is not open",
        )
        .into_response()
    }
}

async fn no_route(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

/// One span per request (so handler logs carry the request id) and one line when it ends.
async fn log_request(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let trace = TraceContext::from_headers(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let probe = path == "/health" || path == "/ready";
    let span = tracing::info_span!(
        "request",
        service,
        %method,
        %path,
        request_id = trace.request_id().unwrap_or("-"),
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if probe {
            tracing::debug!(status, elapsed_ms, "served");
        } else {
            tracing::info!(status, elapsed_ms, "served");
        }
    });
    response
}

/// A service listening on a socket, in this process.
pub struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Serve `router` on `listener` until [`Running::stop`].
    pub fn spawn(listener: TcpListener, router: Router) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, router, async {
            // A dropped sender also means stop.
            let _ = stopped.await;
        }));
        Ok(Running {
            addr,
            stop: Some(stop),
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, finish in-flight requests, and return when the server is done.
    pub async fn stop(mut self) -> io::Result<()> {
        drop(self.stop.take());
        (&mut self.task)
            .await
            .map_err(|e| io::Error::other(format!("server task failed: {e}")))?
    }
}

async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on SIGTERM (what `weft up` and Kubernetes send) or Ctrl-C.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut sigterm) => {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = ctrl_c => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = ctrl_c.await;
        }
    }
}

/// The `main` of each binary: configure from the environment, listen on `HOST:PORT`,
/// serve until SIGTERM, drain, exit. Configuration errors exit with status 2.
pub fn main(name: &'static str, build: fn(&Env) -> Result<App, ConfigError>) -> ExitCode {
    let env = Env::from_process();
    if let Err(error) = crate::logging::init(&env) {
        eprintln!("{name}: {error}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let span = tracing::info_span!("service", name);
    runtime.block_on(run(name, env, build).instrument(span))
}

async fn run(
    name: &'static str,
    env: Env,
    build: fn(&Env) -> Result<App, ConfigError>,
) -> ExitCode {
    let app = match build(&env) {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::from(2);
        }
    };
    let bind = SocketAddr::new(app.common.host, app.common.port);
    let listener = match TcpListener::bind(bind).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%bind, %error, "cannot listen (set HOST/PORT)");
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(bind);
    let fail = &app.common.fail;
    tracing::info!(
        %addr,
        fail_first = fail.first,
        fail_rate = fail.rate,
        fail_seed = ?fail.seed,
        "listening"
    );
    match serve(listener, app.into_router(), termination()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, service = name, "server failed");
            ExitCode::FAILURE
        }
    }
}
