//! The shop's HTTP conventions, shared so every service answers alike:
//! one JSON error shape, and the headers a request carries from the gateway
//! through every chained call.
use serde::Serialize;
use spin_sdk::http::{OutgoingResponse, Request, Response, ResponseOutparam};

/// Set by the gateway on every request and passed on by every service.
pub const REQUEST_ID: &str = "x-request-id";
/// W3C trace context, passed on unchanged.
pub const TRACEPARENT: &str = "traceparent";
/// Who the gateway authenticated (services trust it: they are private).
pub const USER_ID: &str = "x-user-id";
pub const USER_ROLE: &str = "x-user-role";

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The error every service returns:
/// `{"error": {"code": "...", "message": "...", "fields": [...]}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.into(), message: message.into(), fields: Vec::new() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        Self { fields, ..Self::new(400, "validation_failed", "the request has invalid fields") }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, "conflict", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "code": self.code, "message": self.message, "fields": self.fields }
        })
    }

    pub fn into_response(self) -> Response {
        json(self.status, &self.body())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        match e {
            crate::db::DbError::Duplicate(m) => ApiError::conflict(m),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Sends `response`, body and all, through `out`: for a handler that goes
/// on working after its answer (an outbox relay), so that the caller does
/// not wait for that work. `service` names the sender in the log.
pub async fn send(out: ResponseOutparam, mut response: Response, service: &str) {
    let body = std::mem::take(response.body_mut());
    match OutgoingResponse::try_from(response) {
        // The body's sink is dropped, so finished, when this returns.
        Ok(head) => {
            if let Err(e) = out.set_with_body(head, body).await {
                eprintln!("{service}: sending the response failed: {e}");
            }
        }
        Err(e) => eprintln!("{service}: the response cannot be sent: {e}"),
    }
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, body: &T) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .build()
}

/// A 200 JSON response that is the same whoever asks, signed in or not:
/// `Cache-Control: public` lets a shared cache (the gateway's) keep it and
/// serve it to every caller (RFC 9111 §3.5). How long it stays fresh is the
/// cache's setting, so no `max-age` is given.
pub fn public_json<T: Serialize>(body: &T) -> Response {
    let mut response = json(200, body);
    response.set_header("cache-control", "public");
    response
}

/// Parses a JSON body, or a 400 naming the field that is wrong (its path,
/// such as `card.number` or `items[2].quantity`) and why.
pub fn parse_json<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(req.body());
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        // A syntax error has no path ("?"), nor does the top level (".").
        let field = if path == "." || path == "?" { "body".to_string() } else { path };
        let message = e.into_inner().to_string();
        ApiError { fields: vec![FieldError { field, message }], ..ApiError::bad_request("malformed JSON body") }
    })
}

/// The headers to copy onto a chained call made while handling `req`.
pub fn propagated_headers(req: &Request) -> Vec<(String, String)> {
    [REQUEST_ID, TRACEPARENT, USER_ID, USER_ROLE, "authorization"]
        .iter()
        .filter_map(|name| req.header(name).and_then(|v| v.as_str()).map(|v| (name.to_string(), v.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Card {
        number: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Charge {
        card: Card,
    }

    fn request(body: &str) -> Request {
        Request::post("/", body.as_bytes().to_vec()).build()
    }

    #[test]
    fn malformed_json_names_the_field_by_its_path() {
        let e = parse_json::<Charge>(&request(r#"{"card": {"number": 42}}"#)).unwrap_err();
        assert_eq!((e.status, e.fields[0].field.as_str()), (400, "card.number"));
        let e = parse_json::<Charge>(&request("{not json")).unwrap_err();
        assert_eq!(e.fields[0].field, "body");
    }
}
