//! The web console, served by `sluice serve` under `/console`: server-rendered pages for
//! each role (reviewer, regulator, operator, provider, administrator) over the same
//! service calls as the JSON API, in Chinese or English, with no script at all.
//!
//! It owns the console's session (the user's own API token in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/console`), its CSRF check, its security headers
//! and the rendering of pages. It must not decide anything itself: every page and every
//! button goes through [`App`], which authenticates, decides by the policy set and audits
//! exactly as for the API. Nothing secret is rendered except a new account's token, once,
//! to the administrator who made it.

mod messages;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

pub(crate) use messages::{Lang, Msg};

use super::{mark_service_error, request_id, shown_message, status_of};
use crate::error::ServiceError;
use crate::service::{App, Caller};
use sluice_policies::Role;

/// The session cookie: the user's API token, sent only to the console's paths.
const SESSION_COOKIE: &str = "sluice_session";
/// The chosen language.
const LANG_COOKIE: &str = "sluice_lang";
/// How long a console session lasts before signing in again (the token may end sooner).
const SESSION_SECONDS: u32 = 8 * 3600;

/// The console's routes, merged into the API's router (so they share its layers: the
/// request id, the audit of invalid requests, running to the end when the client leaves).
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/console", get(pages::home))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/lang/{code}", get(choose_language))
        .route("/console/style.css", get(stylesheet))
        .route("/console/applications/{id}", get(pages::application))
        .route("/console/applications/{id}/review", post(pages::review_application))
        .route("/console/models/{id}", get(pages::model))
        .route("/console/models/{id}/review", post(pages::review_model))
        .route("/console/runs", post(pages::start_run))
        .route("/console/runs/{id}", get(pages::run))
        .route("/console/runs/{id}/review", post(pages::review_result))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit/entries/{seq}", get(pages::audit_entry))
        .route("/console/audit/export", get(pages::audit_export))
        .route("/console/usage.csv", get(pages::usage_csv))
        .route("/console/alerts.csv", get(pages::alerts_csv))
        .route("/console/datasets", post(pages::register_dataset))
        .route("/console/datasets/{id}/data", post(pages::upload_version))
        .route("/console/datasets/{id}/destroy", post(pages::destroy_dataset))
        .route("/console/organisations", post(pages::create_organisation))
        .route("/console/principals", post(pages::create_principal))
        .route("/console/principals/{id}/approve", post(pages::approve_principal))
        .route("/console/principals/{id}/token", post(pages::issue_token))
        .route("/console/principals/{id}/disable", post(pages::disable_principal))
        .layer(axum::middleware::map_response(security_headers))
}

/// Every console response: no caching of pages with data, no framing, no script, no
/// resources from elsewhere, forms only to the console itself.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// The language of a request: the switch's cookie, else the browser's preference.
fn language(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| Lang::from_accept(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())))
}

/// Whether the browser reached us on a loopback name, where it accepts a `Secure` cookie
/// over plain HTTP; elsewhere the cookie is `Secure` and the console needs HTTPS.
fn secure_flag(headers: &HeaderMap) -> &'static str {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
    let name = host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |p| p.0);
    if matches!(name, "localhost" | "127.0.0.1" | "[::1]") { "" } else { "; Secure" }
}

/// The anti-forgery value every form carries: derived from the session's token, which a
/// page on another site cannot read, so it cannot forge a form this console accepts (on
/// top of `SameSite=Strict`).
fn csrf_of(token: &str) -> String {
    hex::encode(&blake3::derive_key("sluice console csrf v1", token.as_bytes())[..16])
}

/// A signed-in user of the console.
pub(crate) struct Session {
    pub(crate) caller: Caller,
    pub(crate) lang: Lang,
    csrf: String,
    /// The request's path, for the language switch to come back to.
    path: String,
}

impl Session {
    pub(crate) fn t(&self, message: Msg) -> &'static str {
        message.text(self.lang)
    }

    pub(crate) fn role(&self) -> Role {
        self.caller.principal.role
    }

    /// The hidden anti-forgery field of a form.
    pub(crate) fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// Refuses a form without this session's anti-forgery value.
    pub(crate) fn check_csrf(&self, sent: &str) -> Result<(), ConsoleError> {
        let expected = self.csrf.as_bytes();
        // Compared without an early exit, so the time taken says nothing of the value.
        let same = sent.len() == expected.len()
            && sent.bytes().zip(expected).fold(0u8, |differ, (a, b)| differ | (a ^ b)) == 0;
        if same {
            Ok(())
        } else {
            Err(self.error(ServiceError::invalid("the form is stale or was not made by this console; reload the page")))
        }
    }

    /// A service error, to show as a page.
    pub(crate) fn error(&self, error: ServiceError) -> ConsoleError {
        ConsoleError { error, lang: self.lang, request_id: self.caller.request_id.clone(), actor: Some(self.actor()) }
    }

    fn actor(&self) -> (i64, String) {
        (self.caller.principal.id, self.caller.principal.role.as_str().to_owned())
    }

    /// A whole page: the header with who is signed in, the role's navigation, the body.
    pub(crate) fn page(&self, title: &str, body: Markup) -> Response {
        let principal = &self.caller.principal;
        let nav: &[(&str, Msg)] = match principal.role {
            Role::Regulator | Role::Admin => &[("/console", Msg::Home), ("/console/audit", Msg::AuditTrail)],
            _ => &[("/console", Msg::Home)],
        };
        layout(
            self.lang,
            title,
            &self.path,
            html! {
                nav {
                    @for (href, label) in nav { a href=(href) { (self.t(*label)) } }
                    span.who {
                        (self.t(Msg::SignedInAs)) " " strong #who { (self.caller.name) }
                        " · " (self.t(Msg::Role)) " " strong #role { (role_name(principal.role, self.lang)) }
                        " · " (self.t(Msg::Organisation)) " " (principal.organisation.0)
                    }
                    form.inline method="post" action="/console/sign-out" {
                        (self.csrf_field())
                        button #sign-out type="submit" { (self.t(Msg::SignOut)) }
                    }
                }
                (body)
            },
        )
        .into_response()
    }
}

pub(crate) fn role_name(role: Role, lang: Lang) -> &'static str {
    match role {
        Role::Admin => Msg::RoleAdmin,
        Role::Provider => Msg::RoleProvider,
        Role::Operator => Msg::RoleOperator,
        Role::Reviewer => Msg::RoleReviewer,
        Role::Regulator => Msg::RoleRegulator,
    }
    .text(lang)
}

/// The document around every page, signed in or not.
fn layout(lang: Lang, title: &str, path: &str, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang=(if lang == Lang::Zh { "zh-CN" } else { "en" }) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    span.brand { "Sluice" }
                    span.tagline { (Msg::Title.text(lang)) }
                    span.lang {
                        (Msg::Language.text(lang)) ": "
                        @for other in Lang::ALL {
                            @if other == lang { strong { (other.name()) } } @else {
                                a href={ "/console/lang/" (other.code()) "?back=" (path) } { (other.name()) }
                            }
                            " "
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    Html(page.into_string())
}

impl FromRequestParts<Arc<App>> for Session {
    type Rejection = Response;

    /// Signed in: the session cookie holds a token the service accepts. Otherwise the
    /// browser is sent to the sign-in page (a failed token is audited by the service).
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let request_id = request_id(&parts.headers);
        let lang = language(&parts.headers);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|token| !token.is_empty()) else {
            return Err(Redirect::to("/console/sign-in").into_response());
        };
        match app.authenticate(Some(token), &request_id).await {
            Ok(caller) => {
                Ok(Session { caller, lang, csrf: csrf_of(token), path: safe_back(parts.uri.path()).to_owned() })
            }
            Err(error) => {
                let mut response = Redirect::to(&format!("/console/sign-in?failed={}", error.code())).into_response();
                clear_session(&mut response, &parts.headers);
                Err(response)
            }
        }
    }
}

/// A page the console shows when the service refuses or fails: the same status, code and
/// request id as the API would answer, in the page's language.
#[derive(Debug)]
pub(crate) struct ConsoleError {
    error: ServiceError,
    lang: Lang,
    request_id: String,
    actor: Option<(i64, String)>,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let message = shown_message(&self.error, &self.request_id);
        let lang = self.lang;
        let body = html! {
            div.error role="alert" {
                p { strong #error-code { (self.error.code()) } ": " span #error-message { (message) } }
                p { (Msg::RequestId.text(lang)) ": " code { (self.request_id) } }
                p { a href="/console" { (Msg::Back.text(lang)) } }
            }
        };
        let page = layout(lang, Msg::Error.text(lang), "/console", body);
        // Recorded as the API records it.
        let mut response = (status_of(&self.error), page).into_response();
        mark_service_error(&mut response, &self.error, self.actor);
        response
    }
}

/// A form that did not parse: shown as a page, recorded as an invalid request.
pub(crate) fn form_error(session: &Session, rejection: FormRejection) -> ConsoleError {
    session.error(ServiceError::invalid(format!("the form: {}", rejection.body_text())))
}

/// A form that carries the anti-forgery value.
pub(crate) trait Guarded {
    fn csrf(&self) -> &str;
}

/// Marks forms whose `csrf` field carries the anti-forgery value, for [`accepted`].
macro_rules! guarded {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::api::console::Guarded for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(crate) use guarded;

/// A posted form, once it parsed and carries this session's anti-forgery value.
pub(crate) fn accepted<T: Guarded>(
    session: &Session,
    form: Result<axum::Form<T>, FormRejection>,
) -> Result<T, ConsoleError> {
    let axum::Form(form) = form.map_err(|rejection| form_error(session, rejection))?;
    session.check_csrf(form.csrf())?;
    Ok(form)
}

pub(crate) type PageResult = Result<Response, ConsoleError>;

/// A redirect after a form's action (POST, redirect, GET), so reloading does not repeat it.
pub(crate) fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

#[derive(Deserialize)]
struct SignInQuery {
    failed: Option<String>,
}

async fn sign_in_page(headers: HeaderMap, Query(query): Query<SignInQuery>) -> Response {
    let lang = language(&headers);
    let failed: Option<String> =
        query.failed.map(|code| code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect());
    let body = html! {
        @if let Some(code) = failed {
            div.error role="alert" { p { (Msg::Error.text(lang)) ": " strong #error-code { (code) } } }
        }
        form.card method="post" action="/console/sign-in" {
            label for="token" { (Msg::Token.text(lang)) }
            input #token type="password" name="token" autocomplete="off" required;
            p.help { (Msg::TokenHelp.text(lang)) }
            button #sign-in type="submit" { (Msg::SignIn.text(lang)) }
        }
    };
    layout(lang, Msg::SignIn.text(lang), "/console/sign-in", body).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// Checks the token with the service (a wrong one is audited there) and keeps it in the
/// session cookie.
async fn sign_in(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    headers: HeaderMap,
    form: Result<axum::Form<SignInForm>, FormRejection>,
) -> Response {
    let token = form.map(|form| form.0.token.trim().to_owned()).unwrap_or_default();
    let well_formed = !token.is_empty()
        && token.len() <= 200
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let request_id = request_id(&headers);
    let outcome = app.authenticate(well_formed.then_some(token.as_str()), &request_id).await;
    match outcome {
        Ok(_) => {
            let mut response = see_other("/console");
            let cookie = format!(
                "{SESSION_COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{}",
                secure_flag(&headers)
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => see_other(&format!("/console/sign-in?failed={}", error.code())),
    }
}

/// A form with nothing but the anti-forgery value (sign-out, a button).
#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

guarded!(CsrfOnly);

async fn sign_out(
    session: Session,
    headers: HeaderMap,
    form: Result<axum::Form<CsrfOnly>, FormRejection>,
) -> PageResult {
    accepted(&session, form)?;
    let mut response = see_other("/console/sign-in");
    clear_session(&mut response, &headers);
    Ok(response)
}

fn clear_session(response: &mut Response, headers: &HeaderMap) {
    let cookie =
        format!("{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}", secure_flag(headers));
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Deserialize)]
struct BackQuery {
    back: Option<String>,
}

/// Only the console's own paths are gone back to (no open redirect).
fn safe_back(path: &str) -> &str {
    let ok = path.starts_with("/console")
        && !path.starts_with("//")
        && !path.contains("..")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
    if ok { path } else { "/console" }
}

async fn choose_language(
    headers: HeaderMap,
    axum::extract::Path(code): axum::extract::Path<String>,
    Query(query): Query<BackQuery>,
) -> Response {
    let lang = Lang::parse(&code).unwrap_or_else(|| language(&headers));
    let mut response = see_other(safe_back(query.back.as_deref().unwrap_or("/console")));
    let cookie = format!("{LANG_COOKIE}={}; Path=/console; SameSite=Lax; Max-Age=31536000", lang.code());
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn stylesheet() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("console.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_paths_are_gone_back_to() {
        assert_eq!(safe_back("/console/models/3"), "/console/models/3");
        for hostile in ["//evil.example/console", "https://evil.example", "/console/../v1", "/console\\x", "/v1/runs"] {
            assert_eq!(safe_back(hostile), "/console", "{hostile}");
        }
    }

    #[test]
    fn cookies_are_read_by_name_and_secure_off_loopback() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; sluice_session=sk_abc; sluice_lang=en"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("sk_abc"));
        assert_eq!(language(&headers), Lang::En);
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(secure_flag(&headers), "");
        headers.insert(header::HOST, HeaderValue::from_static("sluice.example.gov.cn"));
        assert_eq!(secure_flag(&headers), "; Secure");
    }

    #[test]
    fn the_anti_forgery_value_depends_on_the_token() {
        assert_eq!(csrf_of("sk_a"), csrf_of("sk_a"));
        assert_ne!(csrf_of("sk_a"), csrf_of("sk_b"));
        assert_eq!(csrf_of("sk_a").len(), 32);
    }
}
