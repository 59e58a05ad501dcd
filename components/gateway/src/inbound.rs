//! The client's request as the gateway sees it: its head (method, path,
//! query, headers, the client's address) and its body, read with a cap.
use futures::StreamExt as _;
use spin_sdk::http::IncomingRequest;

use shop_shared::api::ApiError;

/// The largest request body the gateway forwards.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Spin's header with the client's socket address (`ip:port`).
const CLIENT_ADDR: &str = "spin-client-addr";

/// Request headers with lower-case names. Repeated fields are merged into
/// one comma-separated value (RFC 9110 §5.3), so lookups see the whole
/// field; no request header the shop uses is a `Set-Cookie`-like exception.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in pairs {
            let name = name.to_ascii_lowercase();
            match merged.iter_mut().find(|(existing, _)| *existing == name) {
                Some((_, existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                None => merged.push((name, value)),
            }
        }
        Self(merged)
    }

    /// The value of `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Everything about the request but its body.
#[derive(Clone, Debug)]
pub struct Head {
    pub method: String,
    /// The URI path, as the client sent it.
    pub path: String,
    /// The query string without its `?`; empty when there is none.
    pub query: String,
    pub headers: Headers,
}

impl Head {
    pub fn of(req: &IncomingRequest) -> Self {
        let headers = Headers::from_pairs(
            req.headers()
                .entries()
                .into_iter()
                .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned())),
        );
        let path_with_query = req.path_with_query().unwrap_or_else(|| "/".to_owned());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (path_with_query, String::new()),
        };
        Self { method: req.method().to_string(), path, query, headers }
    }

    /// The path and query, as forwarded and as cached.
    pub fn uri(&self) -> String {
        if self.query.is_empty() { self.path.clone() } else { format!("{}?{}", self.path, self.query) }
    }

    /// The client's IP address, from the socket the host accepted (never from
    /// `X-Forwarded-For`: the gateway is the edge, and a client could forge
    /// it to escape its rate limit).
    pub fn client_ip(&self) -> String {
        let addr = self.headers.get(CLIENT_ADDR).unwrap_or("unknown");
        addr.parse::<std::net::SocketAddr>().map_or_else(|_| addr.to_owned(), |socket| socket.ip().to_string())
    }
}

/// Reads the body, refusing more than [`MAX_BODY_BYTES`]: up front when
/// `Content-Length` says so, else as soon as the stream passes the cap, so an
/// oversize upload is never held in memory.
pub async fn read_body(head: &Head, req: IncomingRequest) -> Result<Vec<u8>, ApiError> {
    let declared = head.headers.get("content-length").and_then(|len| len.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut stream = req.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the request body failed: {}", e.to_debug_string())))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend(chunk);
    }
    Ok(body)
}

fn too_large() -> ApiError {
    ApiError::new(413, "payload_too_large", format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive_and_repeats_merge() {
        let headers = Headers::from_pairs([
            ("Accept".to_owned(), "a/b".to_owned()),
            ("X-One".to_owned(), "1".to_owned()),
            ("accept".to_owned(), "c/d".to_owned()),
        ]);
        assert_eq!(headers.get("accept"), Some("a/b, c/d"));
        assert_eq!(headers.get("x-one"), Some("1"));
        assert_eq!(headers.get("x-two"), None);
    }

    fn head_with(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "GET".into(),
            path: "/api/products".into(),
            query: String::new(),
            headers: Headers::from_pairs(headers.iter().map(|(n, v)| (n.to_string(), v.to_string()))),
        }
    }

    #[test]
    fn client_ip_drops_the_port() {
        assert_eq!(head_with(&[("spin-client-addr", "127.0.0.1:4242")]).client_ip(), "127.0.0.1");
        assert_eq!(head_with(&[("spin-client-addr", "[::1]:4242")]).client_ip(), "::1");
        assert_eq!(head_with(&[]).client_ip(), "unknown");
    }

    #[test]
    fn uri_keeps_the_query() {
        let mut head = head_with(&[]);
        assert_eq!(head.uri(), "/api/products");
        head.query = "q=lamp&page=2".into();
        assert_eq!(head.uri(), "/api/products?q=lamp&page=2");
    }
}
