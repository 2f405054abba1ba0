//! The HTTP API: routes, authentication from the `Authorization: Bearer` header, and
//! JSON errors with a stable code; and the web console ([`console`]) over the same service.
//!
//! It owns translating HTTP to service calls and back. It must not make decisions or
//! touch storage directly; a 5xx answer is generic, and its detail goes to the log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::error::ServiceError;
use crate::ids::{ApplicationId, AuthorisationId, DatasetId, ModelId, PrincipalId, RunId};
use crate::service::{
    AlertView, ApplicationList, ApplicationView, BudgetView, CatalogueEntry, CheckpointView, CreatedPrincipal,
    DestroySummary, IngestSummary, ModelList, ModelView, OrganisationView, PrincipalList, ProofView, ReviewOutcome,
    RotationSummary, RunList, RunView, UsageReport, WitnessReport,
};
use crate::service::{
    App, ApplicationListQuery, Caller, ModelListQuery, NewApplication, NewDataset, NewModel, NewPrincipalRequest,
    PrincipalCreation, PrincipalListQuery, RunListQuery, new_request_id,
};
use crate::service::{AuditQuery, UsageQuery};
use sluice_policies::OrganisationId;

mod console;

/// Largest JSON request body (a model upload: 8 MiB of WebAssembly as base64, and its
/// manifest). CSV uploads stream and have no limit.
const MAX_BODY_BYTES: usize = 16 << 20;

/// The router over `app`, separate from serving so tests drive it directly.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi))
        .route("/readyz", get(readiness))
        .route("/v1/principals", post(create_principal).get(list_principals))
        .route("/v1/principals/{id}/token", post(issue_token).delete(revoke_token))
        .route("/v1/principals/{id}/disable", post(disable_principal))
        .route("/v1/principals/{id}/approve", post(approve_principal))
        .route("/v1/organisations", post(create_organisation).get(organisations))
        .route("/v1/organisations/{id}", patch(rename_organisation))
        .route("/v1/token/rotate", post(rotate_own_token))
        .route("/v1/catalogue", get(catalogue))
        .route("/v1/datasets", post(register_dataset))
        .route("/v1/datasets/{id}", delete(destroy_dataset))
        .route("/v1/datasets/{id}/data", put(ingest))
        .route("/v1/datasets/{id}/dummy", get(dummy))
        .route("/v1/keys/rotate", post(rotate_keys))
        .route("/v1/applications", post(submit_application).get(list_applications))
        .route("/v1/applications/{id}", get(application))
        .route("/v1/applications/{id}/reviews", post(review_application))
        .route("/v1/models", post(submit_model).get(list_models))
        .route("/v1/models/{id}/reviews", post(review_model))
        .route("/v1/models/{id}", get(model_view))
        .route("/v1/models/{id}/revoke", post(revoke_model))
        .route("/v1/applications/{id}/withdraw", post(withdraw_application))
        .route("/v1/applications/{id}/submit", post(submit_draft))
        .route("/v1/authorisations/{id}/revoke", post(revoke_authorisation))
        .route("/v1/runs", post(run).get(list_runs))
        .route("/v1/runs/{id}", get(run_result))
        .route("/v1/runs/{id}/review", post(review_result))
        .route("/v1/authorisations/{id}/budget", get(budget))
        .route("/v1/audit/export", get(export_audit))
        .route("/v1/audit/public-key", get(public_key))
        .route("/v1/audit/checkpoint", get(checkpoint))
        .route("/v1/audit/witnesses", get(witnesses))
        .route("/v1/audit/proofs/inclusion", get(inclusion))
        .route("/v1/audit/proofs/consistency", get(consistency))
        .route("/v1/audit/witness", get(witness_request))
        .route("/v1/audit/cosignatures", post(add_cosignature))
        .route("/v1/audit/entries", get(search_audit))
        .route("/v1/usage", get(usage))
        .route("/v1/usage.csv", get(usage_csv))
        .route("/v1/alerts", get(alerts))
        .route("/v1/alerts.csv", get(alerts_csv))
        .merge(console::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(app.clone(), audit_invalid_requests))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(app.clone(), detached))
        .with_state(app)
}

/// Runs a request to its end whether or not its client waits: a client that hangs up drops
/// this future, not the request's work, so no request stops between two `.await`s with a
/// transaction open (sqlx's SQLite pool would take the connection back still inside it, and
/// every later write would wait for a lock nobody releases) or a change half-made. What a
/// request does once begun is bounded by its own limits (run deadlines, body limits).
/// Each is counted in [`App::in_flight`] until it ends, so a shutdown can wait for it.
async fn detached(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let ticket = app.in_flight().begin();
    let work = async move {
        let response = next.run(request).await;
        drop(ticket);
        response
    };
    match tokio::spawn(work).await {
        Ok(response) => response,
        Err(error) => {
            tracing::error!(error = %error, "a request's task failed");
            let body = json!({ "error": { "code": "internal", "message": "internal error" } });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}

/// Marks a response as an [`ApiError`] of ours; an error response without it was made by
/// the framework (no such route, wrong method, a body over the limit, a path or query that
/// does not parse).
#[derive(Debug, Clone)]
struct OurError {
    /// The caller, when the request got as far as authenticating: (actor id, role).
    actor: Option<(i64, String)>,
    code: &'static str,
    /// Whether the service already recorded it (denials, lookups of what does not exist).
    recorded: bool,
}

/// Every invalid request is audited (`request.invalid`, denied, with its code), whoever
/// refused it; and the framework's own refusals answer in the API's JSON error shape.
async fn audit_invalid_requests(
    State(app): State<Arc<App>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // One request id for the extractors and for this record.
    let id = request_id(request.headers());
    if let Ok(value) = header::HeaderValue::from_str(&id) {
        request.headers_mut().insert("x-request-id", value);
    }
    let method = request.method().clone();
    let path: String = request.uri().path().chars().filter(|c| c.is_ascii_graphic()).take(120).collect();
    let response = next.run(request).await;
    let status = response.status();
    if !status.is_client_error() || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return response;
    }
    let (ours, response) = match response.extensions().get::<OurError>().cloned() {
        Some(ours) => (ours, response),
        None => {
            let code = match status {
                StatusCode::NOT_FOUND => "not_found",
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                _ => "invalid_request",
            };
            let detail = response.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
            let message = match String::from_utf8_lossy(&detail).trim() {
                "" => format!("{} {path}: {}", method, status.canonical_reason().unwrap_or("refused")),
                text => text.chars().take(300).collect(),
            };
            let body = ErrorBody::new(code, message, id.clone());
            (OurError { actor: None, code, recorded: false }, (status, Json(body)).into_response())
        }
    };
    if !ours.recorded {
        let mut event = sluice_audit::AuditEvent::new(
            sluice_audit::Act::RequestInvalid,
            format!("{method} {path}"),
            sluice_audit::AuditOutcome::Denied,
        )
        .reason(ours.code);
        event.request_id = id;
        if let Some((actor, role)) = ours.actor {
            event.actor_id = Some(actor);
            event.role = role;
        }
        if let Err(error) = app.record(event).await {
            tracing::error!(error = %format!("{error:#}"), "recording an invalid request failed");
        }
    }
    response
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "done", content_type = "text/plain", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn healthz() -> &'static str {
    "ok"
}

/// The API's OpenAPI 3.1 document, generated from the handlers' annotations and types.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| serde_json::to_value(openapi_document()).unwrap_or_default());
    Json(document.clone()).into_response()
}

/// Readiness, for a load balancer: 200 when this node should get new work, 503 with the
/// reason when it is stopping or its database does not answer. Unauthenticated and not
/// audited, like `/healthz` (liveness), and it reveals nothing but the reason's code.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn readiness(State(app): State<Arc<App>>) -> Response {
    match app.readiness().await {
        Ok(()) => Json(json!({ "ready": true })).into_response(),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "reason": reason }))).into_response()
        }
    }
}

/// The API's OpenAPI document: every route of the JSON API, with its parameters, bodies
/// and answers, from the handlers' `#[utoipa::path]` annotations and the types they use.
/// (`/console` is HTML for browsers and is not in it.)
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        info(title = "Sluice", description = "Public data, usable but not visible: the gateway's JSON API."),
        modifiers(&BearerToken),
        security(("bearer" = [])),
        paths(healthz, readiness, create_principal, list_principals, issue_token, revoke_token, disable_principal, approve_principal, create_organisation, organisations, rename_organisation, rotate_own_token, catalogue, register_dataset, destroy_dataset, ingest, dummy, rotate_keys, submit_application, list_applications, application, review_application, submit_model, list_models, review_model, model_view, revoke_model, withdraw_application, submit_draft, revoke_authorisation, run, list_runs, run_result, review_result, budget, export_audit, public_key, checkpoint, witnesses, inclusion, consistency, witness_request, add_cosignature, search_audit, usage, usage_csv, alerts, alerts_csv, openapi)
    )]
    struct ApiDoc;

    /// Every call but the health checks and the public key carries `Authorization: Bearer`.
    struct BearerToken;
    impl utoipa::Modify for BearerToken {
        fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
            use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
            let components = openapi.components.get_or_insert_with(Default::default);
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
    <ApiDoc as utoipa::OpenApi>::openapi()
}

/// The body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ErrorBody {
    error: ErrorDetail,
    /// The request's id, also in the server's log.
    request_id: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct ErrorDetail {
    /// A stable code (`budget_exhausted`, `not_found`, …).
    code: String,
    message: String,
}

impl ErrorBody {
    fn new(code: &str, message: String, request_id: String) -> Self {
        Self { error: ErrorDetail { code: code.to_owned(), message }, request_id }
    }
}

/// An error as the API answers it: `{"error": {"code", "message"}, "request_id"}`.
#[derive(Debug)]
pub struct ApiError {
    error: ServiceError,
    request_id: String,
    actor: Option<(i64, String)>,
}

/// What a caller is told of a service error: its message, except for an internal error,
/// whose detail goes to the log under the request id.
fn shown_message(error: &ServiceError, request_id: &str) -> String {
    match error {
        ServiceError::Internal(detail) => {
            tracing::error!(request_id = %request_id, error = %format!("{detail:#}"), "internal error");
            "internal error; the request id identifies it in the server log".to_owned()
        }
        other => other.to_string(),
    }
}

/// Marks `response` as an answer to a service error, for the audit layer. Denials, lookups
/// of what does not exist, refused models and failed runs are recorded by the service;
/// invalid input is recorded on the way out. A conflict (a result not visible yet, a name
/// taken) is about state, not the request, and a client polling for a result must not
/// fill the log.
fn mark_service_error(response: &mut Response, error: &ServiceError, actor: Option<(i64, String)>) {
    let recorded = !matches!(error, ServiceError::Invalid(_));
    response.extensions_mut().insert(OurError { actor, code: error.code(), recorded });
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = shown_message(&self.error, &self.request_id);
        let body = ErrorBody::new(self.error.code(), message, self.request_id.clone());
        let mut response = (status_of(&self.error), Json(body)).into_response();
        mark_service_error(&mut response, &self.error, self.actor);
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Request ids from the client are kept if well-formed, so logs on both sides match.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// The authenticated caller of a request.
#[derive(Debug)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<Arc<App>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let request_id = request_id(&parts.headers);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match app.authenticate(token, &request_id).await {
            Ok(caller) => Ok(Authenticated(caller)),
            Err(error) => Err(ApiError { error, request_id, actor: None }),
        }
    }
}

trait WithRequest<T> {
    fn for_caller(self, caller: &Caller) -> ApiResult<T>;
}

impl<T> WithRequest<T> for Result<T, ServiceError> {
    fn for_caller(self, caller: &Caller) -> ApiResult<T> {
        self.map_err(|error| ApiError {
            error,
            request_id: caller.request_id.clone(),
            actor: Some((caller.principal.id, caller.principal.role.as_str().to_owned())),
        })
    }
}

/// JSON bodies are parsed here, so a malformed body is a 400 with our error shape.
fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes, caller: &Caller) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|error| ServiceError::invalid(format!("request body: {error}")))
        .for_caller(caller)
}

#[utoipa::path(post, path = "/v1/principals", request_body = NewPrincipalRequest, responses((status = 201, description = "created, with its token (shown once)", body = CreatedPrincipal), (status = 202, description = "waiting for a second administrator (the two-person rule): its id and state", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn create_principal(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: NewPrincipalRequest = parse_json(&body, &caller)?;
    let created = app.create_principal(&caller, request).await.for_caller(&caller)?;
    let status = match created {
        PrincipalCreation::Active(_) => StatusCode::CREATED,
        PrincipalCreation::Pending { .. } => StatusCode::ACCEPTED,
    };
    Ok((status, Json(created)).into_response())
}

#[utoipa::path(post, path = "/v1/principals/{id}/approve", params(("id" = i64, Path, description = "the id")), responses((status = 201, description = "done", body = CreatedPrincipal), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn approve_principal(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<PrincipalId>,
) -> ApiResult<Response> {
    let approved = app.approve_principal(&caller, id).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(approved)).into_response())
}

/// An organisation's name, to create or rename it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct OrganisationRequest {
    name: String,
}

#[utoipa::path(post, path = "/v1/organisations", request_body = OrganisationRequest, responses((status = 201, description = "done", body = OrganisationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn create_organisation(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: OrganisationRequest = parse_json(&body, &caller)?;
    let created = app.create_organisation(&caller, &request.name).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(patch, path = "/v1/organisations/{id}", params(("id" = i64, Path, description = "the id")), request_body = OrganisationRequest, responses((status = 200, description = "done", body = OrganisationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn rename_organisation(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<OrganisationId>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: OrganisationRequest = parse_json(&body, &caller)?;
    let renamed = app.rename_organisation(&caller, id, &request.name).await.for_caller(&caller)?;
    Ok(Json(renamed).into_response())
}

/// `GET /v1/organisations`.
#[derive(Serialize, utoipa::ToSchema)]
struct OrganisationList {
    organisations: Vec<OrganisationView>,
}

#[utoipa::path(get, path = "/v1/organisations", responses((status = 200, description = "done", body = OrganisationList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn organisations(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    let organisations = app.organisations(&caller).await.for_caller(&caller)?;
    Ok(Json(OrganisationList { organisations }).into_response())
}

#[utoipa::path(post, path = "/v1/principals/{id}/token", params(("id" = i64, Path, description = "the id")), responses((status = 201, description = "done", body = CreatedPrincipal), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn issue_token(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<PrincipalId>,
) -> ApiResult<Response> {
    let issued = app.issue_token(&caller, id).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(post, path = "/v1/token/rotate", responses((status = 201, description = "done", body = CreatedPrincipal), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn rotate_own_token(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    let issued = app.rotate_own_token(&caller).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(delete, path = "/v1/principals/{id}/token", params(("id" = i64, Path, description = "the id")), request_body = RevokeRequest, responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn revoke_token(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<PrincipalId>,
    body: Bytes,
) -> ApiResult<Response> {
    // A DELETE may come without a body; a body, when sent, is a revocation's `{reason}`.
    let request = if body.is_empty() { RevokeRequest::default() } else { parse_json(&body, &caller)? };
    app.revoke_token(&caller, id, &request.reason).await.for_caller(&caller)?;
    Ok(Json(json!({ "principal_id": id, "token": "revoked" })).into_response())
}

#[utoipa::path(post, path = "/v1/principals/{id}/disable", params(("id" = i64, Path, description = "the id")), request_body = RevokeRequest, responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn disable_principal(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<PrincipalId>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: RevokeRequest = parse_json(&body, &caller)?;
    app.disable_principal(&caller, id, &request.reason).await.for_caller(&caller)?;
    Ok(Json(json!({ "principal_id": id, "state": "disabled" })).into_response())
}

/// `GET /v1/catalogue`.
#[derive(Serialize, utoipa::ToSchema)]
struct CatalogueList {
    datasets: Vec<CatalogueEntry>,
}

#[utoipa::path(get, path = "/v1/catalogue", responses((status = 200, description = "done", body = CatalogueList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn catalogue(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    let datasets = app.catalogue(&caller).await.for_caller(&caller)?;
    Ok(Json(CatalogueList { datasets }).into_response())
}

#[utoipa::path(post, path = "/v1/datasets", request_body = NewDataset, responses((status = 201, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn register_dataset(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: NewDataset = parse_json(&body, &caller)?;
    let id = app.register_dataset(&caller, request).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct IngestQuery {
    #[serde(default)]
    skip_invalid: bool,
}

/// Streams the CSV body into the vault: the body is never buffered whole, so an upload of
/// any size is ingested in constant memory.
#[utoipa::path(put, path = "/v1/datasets/{id}/data", params(("id" = i64, Path, description = "the id"), IngestQuery), request_body(content = String, content_type = "text/csv"), responses((status = 201, description = "done", body = IngestSummary), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn ingest(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<DatasetId>,
    Query(query): Query<IngestQuery>,
    body: Body,
) -> ApiResult<Response> {
    let reader = BodyReader::spawn(body);
    let summary = app.ingest(&caller, id, reader, query.skip_invalid, |_| {}).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[utoipa::path(delete, path = "/v1/datasets/{id}", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = DestroySummary), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn destroy_dataset(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<DatasetId>,
) -> ApiResult<Response> {
    Ok(Json(app.destroy_dataset(&caller, id).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DummyQuery {
    #[serde(default = "default_dummy_rows")]
    rows: usize,
    #[serde(default)]
    seed: u64,
}

fn default_dummy_rows() -> usize {
    1_000
}

/// Synthetic rows that follow a dataset's schema, for model development.
#[utoipa::path(get, path = "/v1/datasets/{id}/dummy", params(("id" = i64, Path, description = "the id"), DummyQuery), responses((status = 200, description = "done", content_type = "text/csv", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn dummy(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<DatasetId>,
    Query(query): Query<DummyQuery>,
) -> ApiResult<Response> {
    let csv = app.dummy_rows(&caller, id, query.rows, query.seed).await.for_caller(&caller)?;
    Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response())
}

#[utoipa::path(post, path = "/v1/keys/rotate", responses((status = 200, description = "done", body = RotationSummary), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn rotate_keys(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    Ok(Json(app.rotate_master_key(&caller).await.for_caller(&caller)?).into_response())
}

/// The largest CSV upload accepted.
pub const MAX_UPLOAD_BYTES: u64 = 16 << 30;
/// The longest CSV line accepted (a record with no newline is refused here rather than
/// buffered whole).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// An upload that sends nothing for this long is abandoned.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(60);

/// A blocking `Read` over an HTTP body, fed by a task: the vault's parser reads it on a
/// blocking thread while the body arrives. It bounds what a client can make the gateway
/// hold or wait for: the whole upload ([`MAX_UPLOAD_BYTES`]), one line
/// ([`MAX_LINE_BYTES`]) and a silence ([`UPLOAD_IDLE`]); each ends the upload with an error
/// that says which.
pub(crate) struct BodyReader {
    receiver: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
    /// Bytes read since the last newline.
    line: usize,
}

impl BodyReader {
    pub(crate) fn spawn(body: Body) -> Self {
        Self::spawn_bounded(body, MAX_UPLOAD_BYTES, UPLOAD_IDLE)
    }

    fn spawn_bounded(mut body: Body, max_bytes: u64, idle: Duration) -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut total = 0u64;
            loop {
                let item = match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the upload sent nothing for {} s", idle.as_secs()),
                    )),
                    Ok(None) => break,
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => {
                            total += data.len() as u64;
                            if total > max_bytes {
                                Err(std::io::Error::other(format!("the upload is over {max_bytes} bytes")))
                            } else {
                                Ok(data)
                            }
                        }
                        Err(_) => continue, // trailers carry no data
                    },
                    Ok(Some(Err(error))) => Err(std::io::Error::other(error)),
                };
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Self { receiver, current: Bytes::new(), line: 0 }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(error)) => return Err(error),
                None => return Ok(0),
            }
        }
        let count = buffer.len().min(self.current.len());
        buffer[..count].copy_from_slice(&self.current[..count]);
        self.current = self.current.slice(count..);
        self.line = match buffer[..count].iter().rposition(|&byte| byte == b'\n') {
            Some(last) => count - last - 1,
            None => self.line + count,
        };
        if self.line > MAX_LINE_BYTES {
            return Err(std::io::Error::other(format!("a line is longer than {MAX_LINE_BYTES} bytes")));
        }
        Ok(count)
    }
}

#[utoipa::path(post, path = "/v1/applications", request_body = NewApplication, responses((status = 201, description = "done", body = ApplicationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn submit_application(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: NewApplication = parse_json(&body, &caller)?;
    let view = app.submit_application(&caller, request).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(get, path = "/v1/applications/{id}", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = ApplicationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn application(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ApplicationId>,
) -> ApiResult<Response> {
    Ok(Json(app.application(&caller, id).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct ReviewRequest {
    approve: bool,
    #[serde(default)]
    comment: String,
    /// Model reviews only: the seed 002 §23 checklist an approval must confirm.
    #[serde(default)]
    checklist: Option<crate::service::ReviewChecklist>,
    /// Application reviews only: the approval that creates the authorisation may hold every
    /// release for data product review.
    #[serde(default)]
    hold_outputs: bool,
}

#[utoipa::path(post, path = "/v1/applications/{id}/reviews", params(("id" = i64, Path, description = "the id")), request_body = ReviewRequest, responses((status = 200, description = "done", body = ReviewOutcome), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn review_application(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ApplicationId>,
    body: Bytes,
) -> ApiResult<Response> {
    let review: ReviewRequest = parse_json(&body, &caller)?;
    let outcome = app
        .review_application(&caller, id, review.approve, &review.comment, review.hold_outputs)
        .await
        .for_caller(&caller)?;
    Ok(Json(outcome).into_response())
}

#[utoipa::path(post, path = "/v1/models", request_body = NewModel, responses((status = 201, description = "done", body = ModelView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn submit_model(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: NewModel = parse_json(&body, &caller)?;
    let view = app.submit_model(&caller, request).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(post, path = "/v1/models/{id}/reviews", params(("id" = i64, Path, description = "the id")), request_body = ReviewRequest, responses((status = 200, description = "done", body = ModelView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn review_model(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ModelId>,
    body: Bytes,
) -> ApiResult<Response> {
    let review: ReviewRequest = parse_json(&body, &caller)?;
    let view =
        app.review_model(&caller, id, review.approve, &review.comment, review.checklist).await.for_caller(&caller)?;
    Ok(Json(view).into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

#[utoipa::path(post, path = "/v1/authorisations/{id}/revoke", params(("id" = i64, Path, description = "the id")), request_body = RevokeRequest, responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn revoke_authorisation(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<AuthorisationId>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: RevokeRequest = parse_json(&body, &caller)?;
    app.revoke_authorisation(&caller, id, &request.reason).await.for_caller(&caller)?;
    Ok(Json(json!({ "authorisation_id": id, "revoked": true })).into_response())
}

#[utoipa::path(post, path = "/v1/models/{id}/revoke", params(("id" = i64, Path, description = "the id")), request_body = RevokeRequest, responses((status = 200, description = "done", body = ModelView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn revoke_model(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ModelId>,
    body: Bytes,
) -> ApiResult<Response> {
    let request: RevokeRequest = parse_json(&body, &caller)?;
    Ok(Json(app.revoke_model(&caller, id, &request.reason).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/models/{id}", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = ModelView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn model_view(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ModelId>,
) -> ApiResult<Response> {
    Ok(Json(app.model_view(&caller, id).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(post, path = "/v1/applications/{id}/submit", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = ApplicationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn submit_draft(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ApplicationId>,
) -> ApiResult<Response> {
    Ok(Json(app.submit_draft(&caller, id).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(post, path = "/v1/applications/{id}/withdraw", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = ApplicationView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn withdraw_application(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<ApplicationId>,
) -> ApiResult<Response> {
    Ok(Json(app.withdraw_application(&caller, id).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct RunRequest {
    authorisation_id: AuthorisationId,
    model_id: ModelId,
}

#[utoipa::path(post, path = "/v1/runs", request_body = RunRequest, responses((status = 201, description = "done", body = RunView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn run(State(app): State<Arc<App>>, Authenticated(caller): Authenticated, body: Bytes) -> ApiResult<Response> {
    let request: RunRequest = parse_json(&body, &caller)?;
    let view = app.run(&caller, request.authorisation_id, request.model_id).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

#[utoipa::path(post, path = "/v1/runs/{id}/review", params(("id" = i64, Path, description = "the id")), request_body = ReviewRequest, responses((status = 200, description = "done", body = RunView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn review_result(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<RunId>,
    body: Bytes,
) -> ApiResult<Response> {
    let review: ReviewRequest = parse_json(&body, &caller)?;
    Ok(Json(app.review_result(&caller, id, review.approve, &review.comment).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/principals", params(PrincipalListQuery), responses((status = 200, description = "done", body = PrincipalList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn list_principals(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<PrincipalListQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.list_principals(&caller, query).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/applications", params(ApplicationListQuery), responses((status = 200, description = "done", body = ApplicationList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn list_applications(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<ApplicationListQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.list_applications(&caller, query).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/models", params(ModelListQuery), responses((status = 200, description = "done", body = ModelList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn list_models(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<ModelListQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.list_models(&caller, query).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/runs", params(RunListQuery), responses((status = 200, description = "done", body = RunList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn list_runs(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<RunListQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.list_runs(&caller, query).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = RunView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn run_result(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<RunId>,
) -> ApiResult<Response> {
    Ok(Json(app.run_result(&caller, id).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/authorisations/{id}/budget", params(("id" = i64, Path, description = "the id")), responses((status = 200, description = "done", body = BudgetView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn budget(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<AuthorisationId>,
) -> ApiResult<Response> {
    Ok(Json(app.budget(&caller, id).await.for_caller(&caller)?).into_response())
}

#[utoipa::path(get, path = "/v1/audit/export", responses((status = 200, description = "done", content_type = "application/x-ndjson", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn export_audit(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    let text = app.export_audit(&caller).await.for_caller(&caller)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct CheckpointQuery {
    #[serde(default)]
    fresh: bool,
}

/// The latest signed checkpoint (`?fresh=true` issues one covering everything now).
#[utoipa::path(get, path = "/v1/audit/checkpoint", params(CheckpointQuery), responses((status = 200, description = "done", body = CheckpointView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn checkpoint(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<CheckpointQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.checkpoint(&caller, query.fresh).await.for_caller(&caller)?).into_response())
}

/// The witnesses the gateway accepts and how far each one's cosignatures reach.
#[utoipa::path(get, path = "/v1/audit/witnesses", responses((status = 200, description = "done", body = WitnessReport), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn witnesses(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    Ok(Json(app.witness_status(&caller).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InclusionQuery {
    seq: u64,
    size: u64,
}

#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", params(InclusionQuery), responses((status = 200, description = "done", body = ProofView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn inclusion(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<InclusionQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.inclusion(&caller, query.seq, query.size).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

#[utoipa::path(get, path = "/v1/audit/proofs/consistency", params(ConsistencyQuery), responses((status = 200, description = "done", body = ProofView), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn consistency(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<ConsistencyQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.consistency(&caller, query.from, query.to).await.for_caller(&caller)?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct WitnessQuery {
    #[serde(default)]
    old: u64,
}

/// The C2SP tlog-witness `add-checkpoint` body (text) for a witness keeping `old` entries.
#[utoipa::path(get, path = "/v1/audit/witness", params(WitnessQuery), responses((status = 200, description = "done", content_type = "text/plain", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn witness_request(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<WitnessQuery>,
) -> ApiResult<Response> {
    let body = app.witness_request(&caller, query.old).await.for_caller(&caller)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct CosignatureRequest {
    size: u64,
    cosignature: String,
}

#[utoipa::path(post, path = "/v1/audit/cosignatures", request_body = CosignatureRequest, responses((status = 201, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn add_cosignature(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> ApiResult<Response> {
    let request: CosignatureRequest = parse_json(&body, &caller)?;
    app.add_cosignature(&caller, request.size, &request.cosignature).await.for_caller(&caller)?;
    Ok((StatusCode::CREATED, Json(json!({ "size": request.size, "cosigned": true }))).into_response())
}

/// `GET /v1/audit/entries`: entries as the export writes them (`docs/audit-format.md`).
#[derive(Serialize, utoipa::ToSchema)]
struct AuditEntryList {
    #[schema(value_type = Vec<Object>)]
    entries: Vec<sluice_audit::AuditEntry>,
}

#[utoipa::path(get, path = "/v1/audit/entries", params(AuditQuery), responses((status = 200, description = "done", body = AuditEntryList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn search_audit(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Response> {
    let entries = app.search_audit(&caller, query).await.for_caller(&caller)?;
    Ok(Json(AuditEntryList { entries }).into_response())
}

/// Usage per scenario and month (`?from=YYYY-MM&until=&dataset_id=&authorisation_id=`).
#[utoipa::path(get, path = "/v1/usage", params(UsageQuery), responses((status = 200, description = "done", body = UsageReport), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn usage(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Response> {
    Ok(Json(app.usage(&caller, query).await.for_caller(&caller)?).into_response())
}

/// The same figures as CSV, to import into a spreadsheet or an invoice.
#[utoipa::path(get, path = "/v1/usage.csv", params(UsageQuery), responses((status = 200, description = "done", content_type = "text/csv", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn usage_csv(
    State(app): State<Arc<App>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Response> {
    let report = app.usage(&caller, query).await.for_caller(&caller)?;
    Ok(csv_download("sluice-usage.csv", report.to_csv()))
}

/// The alerts recorded in the log, newest first (regulators).
/// `GET /v1/alerts`.
#[derive(Serialize, utoipa::ToSchema)]
struct AlertList {
    alerts: Vec<AlertView>,
}

#[utoipa::path(get, path = "/v1/alerts", responses((status = 200, description = "done", body = AlertList), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn alerts(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    Ok(Json(AlertList { alerts: app.alerts(&caller).await.for_caller(&caller)? }).into_response())
}

#[utoipa::path(get, path = "/v1/alerts.csv", responses((status = 200, description = "done", content_type = "text/csv", body = String), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn alerts_csv(State(app): State<Arc<App>>, Authenticated(caller): Authenticated) -> ApiResult<Response> {
    let alerts = app.alerts(&caller).await.for_caller(&caller)?;
    Ok(csv_download("sluice-alerts.csv", crate::service::alerts_csv(&alerts)))
}

/// A CSV body, offered as a file of this name.
pub(crate) fn csv_download(name: &'static str, text: String) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// The checkpoint-signing public key, for regulators to pin out of band.
#[utoipa::path(get, path = "/v1/audit/public-key", responses((status = 200, description = "done", body = Object), (status = "4XX", description = "refused: the JSON error shape", body = ErrorBody), (status = "5XX", description = "failed: a generic message and the request id", body = ErrorBody)))]
async fn public_key(State(app): State<Arc<App>>) -> Response {
    Json(json!({ "public_key": app.public_key().to_string(), "origin": sluice_audit::ORIGIN })).into_response()
}

/// The HTTP status for each kind of service error.
fn status_of(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ServiceError::Denied(denial) if denial.reason.retry_later() => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Denied(_) => StatusCode::FORBIDDEN,
        ServiceError::NotFound { .. } => StatusCode::NOT_FOUND,
        ServiceError::Invalid(_) | ServiceError::InvalidRecorded(_) => StatusCode::BAD_REQUEST,
        ServiceError::Conflict(_) => StatusCode::CONFLICT,
        ServiceError::ModelRejected(_) | ServiceError::RunFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Reads a whole body through a [`BodyReader`] on a blocking thread, as ingest does.
    async fn read_all(reader: BodyReader) -> std::io::Result<Vec<u8>> {
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map(|_| bytes)
        })
        .await
        .expect("reader thread")
    }

    #[tokio::test]
    async fn an_upload_is_bounded_in_size_line_length_and_silence() {
        let ok = read_all(BodyReader::spawn(Body::from("a,b\n1,2\n"))).await.expect("a small upload");
        assert_eq!(ok, b"a,b\n1,2\n");

        let long_line = vec![b'x'; MAX_LINE_BYTES + 10];
        let error = read_all(BodyReader::spawn(Body::from(long_line))).await.expect_err("one endless line");
        assert!(error.to_string().contains("a line is longer"), "{error}");
        let mut many_lines = Vec::new();
        for _ in 0..3 {
            many_lines.extend(vec![b'y'; MAX_LINE_BYTES - 1]);
            many_lines.push(b'\n');
        }
        assert_eq!(read_all(BodyReader::spawn(Body::from(many_lines))).await.expect("long lines").len(), 3 << 20);

        let error = read_all(BodyReader::spawn_bounded(Body::from(vec![b'z'; 100]), 64, UPLOAD_IDLE))
            .await
            .expect_err("too large");
        assert!(error.to_string().contains("over 64 bytes"), "{error}");

        // A client that sends a little, then nothing: the upload ends with a timeout.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        sender.send(Ok(Bytes::from_static(b"a,b\n"))).await.expect("send");
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        let reader = BodyReader::spawn_bounded(Body::from_stream(stream), MAX_UPLOAD_BYTES, Duration::from_millis(200));
        let error = read_all(reader).await.expect_err("silence");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
        drop(sender);
    }
}
