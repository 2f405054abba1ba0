//! An in-process HTTP client over the gateway's router: real requests through routing,
//! authentication, JSON and error mapping, without a socket. `sluice demo` and the
//! integration tests use it.
//!
//! It must not reach into the service layer: everything goes through HTTP semantics.

use axum::Router;
use axum::body::Body;
pub use axum::http::Method;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Debug, Clone)]
pub struct InProcessClient {
    router: Router,
}

/// A response: status and body text (JSON for everything but the audit export).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub text: String,
}

impl ApiResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// The error code of an error response, if it is one.
    pub fn error_code(&self) -> Option<String> {
        self.json()["error"]["code"].as_str().map(str::to_owned)
    }

    /// The body, or an error naming the status, code and message.
    pub fn ok(self) -> anyhow::Result<serde_json::Value> {
        if self.status.is_success() {
            Ok(self.json())
        } else {
            let json = self.json();
            anyhow::bail!(
                "HTTP {}: {} ({})",
                self.status.as_u16(),
                json["error"]["message"].as_str().unwrap_or(&self.text),
                json["error"]["code"].as_str().unwrap_or("no code")
            )
        }
    }
}

impl InProcessClient {
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> ApiResponse {
        let mut request = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, content_type);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body)).expect("a well-formed request");
        let response = self.router.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
        ApiResponse { status, text: String::from_utf8_lossy(&bytes).into_owned() }
    }

    pub async fn get(&self, path: &str, token: &str) -> ApiResponse {
        self.send(Method::GET, path, Some(token), "application/json", Vec::new()).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &serde_json::Value) -> ApiResponse {
        self.send(Method::POST, path, Some(token), "application/json", body.to_string().into_bytes()).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &serde_json::Value) -> ApiResponse {
        self.send(Method::PATCH, path, Some(token), "application/json", body.to_string().into_bytes()).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> ApiResponse {
        self.send(Method::DELETE, path, Some(token), "application/json", Vec::new()).await
    }

    pub async fn put_csv(&self, path: &str, token: &str, csv: Vec<u8>) -> ApiResponse {
        self.send(Method::PUT, path, Some(token), "text/csv", csv).await
    }
}
