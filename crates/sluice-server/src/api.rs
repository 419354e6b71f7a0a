//! The HTTP API: JSON under `/api/v1`, live results as server-sent events, Prometheus
//! text at `/metrics`, an optional bearer token on all of it; the console's page at `/`
//! (without a token: it asks for one). A refusal is JSON `{"error": ...}` with the
//! status that says whose fault it is (400, 401, 404, 409); 500 only for the server's
//! own failures.

use std::future::Future;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ServerError;
use crate::manager::{Manager, Restore};

/// How the server answers.
#[derive(Clone)]
pub struct ServerConfig {
    pub manager: Manager,
    /// With a token, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

type ApiResult = Result<Response, ServerError>;

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> ApiResult {
    Ok((status, axum::Json(v)).into_response())
}

/// A JSON body, or a 400 that says what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ServerError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|e| ServerError::BadRequest(format!("the request needs a JSON body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ServerError::BadRequest(format!("the request body is not valid: {e}")))
}

/// Over the API a checkpoint is named, never a directory: the job's newest, none, or
/// one of its epochs.
fn restore(from: Option<String>, default: Restore) -> Result<Restore, ServerError> {
    match from.as_deref() {
        None => Ok(default),
        Some("newest") => Ok(Restore::Newest),
        Some("fresh") => Ok(Restore::Fresh),
        Some(c) if !c.is_empty() && c.len() <= 20 && c.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Restore::Chosen(c.to_string()))
        }
        Some(c) => Err(ServerError::BadRequest(format!(
            "from_checkpoint must be 'newest', 'fresh' or an epoch number of the job's own checkpoints, not {c:?}"
        ))),
    }
}

/// Runs `f` off the async executor: planning SQL and writing the catalog block.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServerError::Internal(format!("a request's work failed: {e}")))?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    sql: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    name: String,
    sql: String,
    /// "fresh" (the default), "newest", or an epoch.
    from_checkpoint: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    /// "newest" (the default), "fresh", or an epoch.
    from_checkpoint: Option<String>,
}

async fn validate(State(c): State<ServerConfig>, body: Bytes) -> ApiResult {
    let b: ValidateBody = parse(&body)?;
    let plan = blocking(move || c.manager.validate(&b.sql)).await?;
    json(
        StatusCode::OK,
        &serde_json::json!({ "valid": true, "plan": plan }),
    )
}

async fn submit(State(c): State<ServerConfig>, body: Bytes) -> ApiResult {
    let b: SubmitBody = parse(&body)?;
    let from = restore(b.from_checkpoint, Restore::Fresh)?;
    let job = blocking(move || c.manager.submit(&b.name, &b.sql, from)).await?;
    json(StatusCode::CREATED, &job)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TablesBody {
    name: String,
    sql: String,
}

async fn list_tables(State(c): State<ServerConfig>) -> ApiResult {
    json(StatusCode::OK, &c.manager.tables()?)
}

async fn add_tables(State(c): State<ServerConfig>, body: Bytes) -> ApiResult {
    let b: TablesBody = parse(&body)?;
    let name = b.name.clone();
    let declares = blocking(move || {
        c.manager.add_tables(crate::catalog::Definitions {
            name: b.name,
            sql: b.sql,
        })
    })
    .await?;
    json(
        StatusCode::CREATED,
        &serde_json::json!({ "name": name, "declares": declares }),
    )
}

async fn drop_tables(State(c): State<ServerConfig>, Path(name): Path<String>) -> ApiResult {
    blocking(move || c.manager.drop_tables(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list(State(c): State<ServerConfig>) -> ApiResult {
    json(StatusCode::OK, &c.manager.list()?)
}

async fn get_job(State(c): State<ServerConfig>, Path(job): Path<String>) -> ApiResult {
    json(StatusCode::OK, &c.manager.get(&job, true)?)
}

async fn stop(State(c): State<ServerConfig>, Path(job): Path<String>) -> ApiResult {
    json(
        StatusCode::ACCEPTED,
        &blocking(move || c.manager.stop(&job)).await?,
    )
}

async fn cancel(State(c): State<ServerConfig>, Path(job): Path<String>) -> ApiResult {
    json(
        StatusCode::ACCEPTED,
        &blocking(move || c.manager.cancel(&job)).await?,
    )
}

async fn resume(State(c): State<ServerConfig>, Path(job): Path<String>, body: Bytes) -> ApiResult {
    let b: ResumeBody = parse(&body)?;
    let from = restore(b.from_checkpoint, Restore::Newest)?;
    let job = blocking(move || c.manager.resume(&job, from)).await?;
    json(StatusCode::ACCEPTED, &job)
}

async fn delete(State(c): State<ServerConfig>, Path(job): Path<String>) -> ApiResult {
    blocking(move || c.manager.delete(&job)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn checkpoints(State(c): State<ServerConfig>, Path(job): Path<String>) -> ApiResult {
    json(
        StatusCode::OK,
        &blocking(move || c.manager.checkpoints(&job)).await?,
    )
}

async fn live_rows(
    State(c): State<ServerConfig>,
    Path((job, sink)): Path<(String, String)>,
) -> Result<Response, ServerError> {
    let sub = c.manager.watch(&job, &sink)?;
    Ok(crate::live::events(&job, &sink, sub).into_response())
}

async fn metrics(State(c): State<ServerConfig>) -> ApiResult {
    let text = crate::prometheus::render(&c.manager.figures()?);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

async fn health() -> ApiResult {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn not_found(req: Request) -> ServerError {
    ServerError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn auth(
    State(c): State<ServerConfig>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &c.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compared in constant time, so that timing does not tell how much was right.
        let right = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())));
        if !right {
            return ServerError::Unauthorized(
                "this server needs a token: send Authorization: Bearer <token> (sluice commands take --auth-token or SLUICE_AUTH_TOKEN)".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

pub fn router(config: ServerConfig) -> Router {
    let api = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/validate", post(validate))
        .route("/api/v1/jobs", get(list).post(submit))
        .route("/api/v1/catalog", get(list_tables).post(add_tables))
        .route("/api/v1/catalog/{name}", axum::routing::delete(drop_tables))
        .route("/api/v1/jobs/{job}", get(get_job).delete(delete))
        .route("/api/v1/jobs/{job}/stop", post(stop))
        .route("/api/v1/jobs/{job}/cancel", post(cancel))
        .route("/api/v1/jobs/{job}/resume", post(resume))
        .route("/api/v1/jobs/{job}/checkpoints", get(checkpoints))
        .route("/api/v1/jobs/{job}/sinks/{sink}/rows", get(live_rows))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(config.clone(), auth))
        .with_state(config);
    crate::console::router().merge(api)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(config))
        .with_graceful_shutdown(shutdown)
        .await
}
