//! The gateway's answer to the client: a status, headers that may repeat
//! (`Set-Cookie`), and a buffered body.
use futures::SinkExt as _;
use spin_sdk::http::{Fields, OutgoingResponse, ResponseOutparam};

use shop_shared::api::ApiError;

/// Connection-level fields that never cross a proxy (RFC 9110 §7.6.1), and
/// that wasi:http refuses to carry. `content-length` is left out too: the
/// host frames the body the gateway actually sends.
const HOP_BY_HOP: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// Whether a field stays behind at the gateway instead of being relayed:
/// hop-by-hop fields, those the `Connection` field names, and
/// `content-length`.
pub fn is_hop_by_hop(name: &str, connection: Option<&str>) -> bool {
    name == "content-length"
        || HOP_BY_HOP.contains(&name)
        || connection.is_some_and(|listed| listed.split(',').any(|token| token.trim().eq_ignore_ascii_case(name)))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Self { status, headers: vec![("content-type".into(), "application/json".into())], body }
    }

    /// The first value of `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, joined as one list (RFC 9110 §5.3).
    pub fn joined_header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// Replaces every value of `name` with `value`.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        self.remove_header(name);
        self.headers.push((name.to_owned(), value.into()));
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_header(name, value);
        self
    }

    fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| n != name);
    }

    /// Writes the reply to the client.
    pub async fn send(self, out: ResponseOutparam) {
        let mut entries: Vec<(String, Vec<u8>)> = self
            .headers
            .into_iter()
            .filter(|(name, _)| !is_hop_by_hop(name, None))
            .map(|(name, value)| (name, value.into_bytes()))
            .collect();
        // The body is whole: say how long it is rather than chunk it. 204
        // and 304 have no body and must not claim one.
        if !matches!(self.status, 204 | 304) {
            entries.push(("content-length".into(), self.body.len().to_string().into_bytes()));
        }
        let (response, body) = match Fields::from_list(&entries) {
            Ok(fields) => (outgoing(fields, self.status), self.body),
            Err(e) => {
                eprintln!("gateway: dropping a reply with invalid headers: {e:?}");
                let error = ApiError::internal("the response had invalid headers");
                let fields = Fields::from_list(&[("content-type".into(), b"application/json".to_vec())])
                    .expect("a static header is valid");
                (outgoing(fields, error.status), serde_json::to_vec(&error.body()).unwrap_or_default())
            }
        };
        let mut sink = response.take_body();
        out.set(response);
        if let Err(e) = sink.send(body).await {
            // The client went away; there is nobody left to tell.
            eprintln!("gateway: writing the response body failed: {e:?}");
        }
    }
}

fn outgoing(fields: Fields, status: u16) -> OutgoingResponse {
    let response = OutgoingResponse::new(fields);
    // Statuses come from ApiError or from a service's own valid response.
    response.set_status_code(status).expect("a valid HTTP status");
    response
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Self {
        Reply::json(error.status, serde_json::to_vec(&error.body()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_include_those_connection_names() {
        assert!(is_hop_by_hop("transfer-encoding", None));
        assert!(is_hop_by_hop("content-length", None));
        assert!(!is_hop_by_hop("x-secret", None));
        assert!(is_hop_by_hop("x-secret", Some("keep-alive, X-Secret")));
        assert!(!is_hop_by_hop("content-type", Some("close")));
    }

    #[test]
    fn set_header_replaces_every_value() {
        let mut reply = Reply::json(200, Vec::new());
        reply.headers.push(("vary".into(), "accept".into()));
        reply.headers.push(("vary".into(), "accept-language".into()));
        assert_eq!(reply.joined_header("vary").as_deref(), Some("accept, accept-language"));
        reply.set_header("vary", "origin");
        assert_eq!(reply.joined_header("vary").as_deref(), Some("origin"));
    }

    #[test]
    fn api_errors_become_json_replies() {
        let reply = Reply::from(ApiError::not_found("nothing here"));
        assert_eq!(reply.status, 404);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}
