//! Calls to the other services, by service chaining
//! (`http://<service>.spin.internal/...`).
//!
//! Every call carries the request's trace headers (request id, trace
//! context), so one checkout can be followed across services. A call either
//! gets an answer ([`Reply`], whatever its status: each client decides what
//! a status means for its operation) or ends [`Unavailable`]: no answer, or
//! one that does not say how the operation ended. Then whether it happened
//! is unknown and the caller repeats it later; every operation called here
//! is idempotent, so repeating is safe.
use serde_json::Value;
use shop_shared::api::{USER_ID, USER_ROLE, propagated_headers};
use spin_sdk::http::{Method, Request, Response, send};

pub mod payments;
pub mod products;

/// The headers chained calls carry.
#[derive(Clone, Debug)]
pub struct Upstream {
    headers: Vec<(String, String)>,
}

/// An answer from another service.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The JSON body (`Null` if there was none or it was not JSON).
    pub body: Value,
}

/// A call that did not get a usable answer; the error says why.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Upstream {
    /// Calls made while handling `req`, on behalf of whoever made it.
    pub fn for_request(req: &Request) -> Self {
        Self { headers: propagated_headers(req) }
    }

    /// The same trace, acting for `user_id`: a saga works for the user who
    /// placed its order, whoever's request happens to resume it.
    pub fn on_behalf_of(&self, user_id: &str) -> Self {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| ![USER_ID, USER_ROLE, "authorization"].contains(&name.as_str()))
            .cloned()
            .collect();
        headers.push((USER_ID.to_string(), user_id.to_string()));
        Self { headers }
    }

    pub async fn get(&self, url: &str) -> Result<Reply, Unavailable> {
        self.send(Method::Get, url, Vec::new(), &[]).await
    }

    /// POSTs a JSON body, with `extra` headers (e.g. an idempotency key).
    pub async fn post(&self, url: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Result<Reply, Unavailable> {
        self.send(Method::Post, url, body, extra).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Vec<u8>,
        extra: &[(&str, &str)],
    ) -> Result<Reply, Unavailable> {
        let mut builder = Request::builder();
        builder.method(method).uri(url);
        for (name, value) in &self.headers {
            builder.header(name.as_str(), value.as_str());
        }
        for (name, value) in extra {
            builder.header(*name, *value);
        }
        if !body.is_empty() {
            builder.header("content-type", "application/json");
        }
        let request = builder.body(body).build();
        let response: Response = send(request).await.map_err(|e| Unavailable(format!("{url}: {e}")))?;
        let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        Ok(Reply { status: *response.status(), body })
    }
}

impl Reply {
    /// This answer as an [`Unavailable`]: a server error, or a status the
    /// operation does not define, so its outcome is not known.
    pub fn unexpected(&self, what: &str) -> Unavailable {
        Unavailable(format!("{what}: unexpected status {} ({})", self.status, self.body))
    }

    /// The `error.code` of an error body, if it has one.
    pub fn error_code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }
}

/// Answered to a client when a service a request depends on did not answer.
impl From<Unavailable> for shop_shared::api::ApiError {
    fn from(e: Unavailable) -> Self {
        Self::new(503, "upstream_unavailable", e.0)
    }
}
