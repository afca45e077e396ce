//! Calling the REST API from tests: JSON in, status and JSON (or bytes) out.

use anyhow::Result;
use reqwest::Method;
use serde_json::Value;

use crate::TandemServer;

/// A response: status, headers and body bytes.
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as received.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error code of an error body (`""` when there is none).
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends `body` (raw bytes with `content_type`) to `path` as `token`.
pub async fn send(
    server: &TandemServer,
    method: Method,
    token: Option<&str>,
    path: &str,
    body: Option<(Vec<u8>, &str)>,
) -> Result<Response> {
    let mut request = reqwest::Client::new().request(method, server.http(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((bytes, content_type)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    let response = request.send().await?;
    Ok(Response {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await?.to_vec(),
    })
}

/// Sends a JSON body (or none) to `path` as `token`; answers the status and the JSON body.
pub async fn json(
    server: &TandemServer,
    method: Method,
    token: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
    let response = send(server, method, Some(token), path, body).await?;
    Ok((response.status, response.json()))
}

/// `GET path` as `token`, which must answer 200; its JSON body.
pub async fn get(server: &TandemServer, token: &str, path: &str) -> Result<Value> {
    let (status, body) = json(server, Method::GET, token, path, None).await?;
    anyhow::ensure!(status == 200, "GET {path}: {status} {body}");
    Ok(body)
}

/// `POST path` with a JSON body as `token`; answers the status and the JSON body.
pub async fn post(
    server: &TandemServer,
    token: &str,
    path: &str,
    body: Value,
) -> Result<(u16, Value)> {
    json(server, Method::POST, token, path, Some(body)).await
}
