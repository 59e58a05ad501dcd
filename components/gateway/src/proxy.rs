//! Forwarding a request to its service over Spin's service chaining
//! (`http://<service>.spin.internal<path and query>`), and bringing its
//! answer back unchanged but for connection-level fields.
//!
//! Services trust `x-user-id` / `x-user-role` because only the gateway can
//! reach them, so the gateway drops whatever a client sent under any
//! `x-user-*` name and sets them from the verified token alone.
use spin_sdk::http::{IncomingResponse, Method, Request, send};

use shop_shared::api::{ApiError, REQUEST_ID, TRACEPARENT, USER_ID, USER_ROLE};

use crate::inbound::Head;
use crate::reply::{Reply, is_hop_by_hop};
use crate::token::Identity;
use crate::trace::{TRACESTATE, TraceContext};

/// Sends the request to `service` and returns its response as it is.
pub async fn forward(service: &str, head: &Head, body: Vec<u8>, identity: Option<&Identity>, trace: &TraceContext) -> Result<Reply, ApiError> {
    let url = format!("http://{service}.spin.internal{}", head.uri());
    let mut headers = forwarded_headers(head, identity, trace);
    if !body.is_empty() {
        headers.push(("content-length".into(), body.len().to_string()));
    }
    let request = Request::builder().method(method(&head.method)).uri(&url).headers(headers).body(body).build();
    let unavailable = |detail: String| {
        eprintln!("gateway [{}]: {} {url}: {detail}", trace.request_id, head.method);
        ApiError::new(502, "bad_gateway", format!("the {service} service is unavailable"))
    };
    let response: IncomingResponse = send(request).await.map_err(|e| unavailable(e.to_string()))?;
    let status = response.status();
    let entries = response.headers().entries();
    let body = response.into_body().await.map_err(|e| unavailable(e.to_debug_string()))?;
    let connection = entries
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    let headers = entries
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), String::from_utf8_lossy(&value).into_owned()))
        .filter(|(name, _)| !is_hop_by_hop(name, Some(&connection)))
        .collect();
    Ok(Reply { status, headers, body })
}

/// The client's headers minus connection-level, host-set and identity
/// fields, plus the verified identity and the trace context.
fn forwarded_headers(head: &Head, identity: Option<&Identity>, trace: &TraceContext) -> Vec<(String, String)> {
    let connection = head.headers.get("connection");
    let mut headers: Vec<(String, String)> = head
        .headers
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name, connection)
                && !name.starts_with("spin-")
                && !name.starts_with("x-user-")
                && ![REQUEST_ID, TRACEPARENT, TRACESTATE].contains(name)
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    if let Some(identity) = identity {
        headers.push((USER_ID.into(), identity.user_id.clone()));
        headers.push((USER_ROLE.into(), identity.role.as_str().into()));
    }
    headers.extend(trace.headers());
    headers
}

fn method(name: &str) -> Method {
    match name {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "CONNECT" => Method::Connect,
        "OPTIONS" => Method::Options,
        "TRACE" => Method::Trace,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::Headers;
    use crate::token::Role;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head {
            method: "POST".into(),
            path: "/api/cart/items".into(),
            query: String::new(),
            headers: Headers::from_pairs(headers.iter().map(|(n, v)| (n.to_string(), v.to_string()))),
        }
    }

    fn trace() -> TraceContext {
        TraceContext { request_id: "rid".into(), traceparent: "tp".into(), tracestate: None }
    }

    fn value<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn client_identity_headers_are_replaced_by_the_verified_ones() {
        let head = head(&[("x-user-id", "admin-1"), ("X-User-Role", "admin"), ("x-user-extra", "1"), ("content-type", "application/json")]);
        let identity = Identity { user_id: "u7".into(), role: Role::Customer };
        let headers = forwarded_headers(&head, Some(&identity), &trace());
        assert_eq!(value(&headers, "x-user-id"), ["u7"]);
        assert_eq!(value(&headers, "x-user-role"), ["customer"]);
        assert!(value(&headers, "x-user-extra").is_empty());
        assert_eq!(value(&headers, "content-type"), ["application/json"]);

        let anonymous = forwarded_headers(&head, None, &trace());
        assert!(anonymous.iter().all(|(name, _)| !name.starts_with("x-user-")), "{anonymous:?}");
    }

    #[test]
    fn trace_context_is_the_gateways_and_connection_fields_stay() {
        let head = head(&[
            ("x-request-id", "client"),
            ("traceparent", "client"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("host", "shop.example"),
            ("content-length", "5"),
            ("spin-full-url", "http://x/"),
            ("authorization", "Bearer t"),
        ]);
        let headers = forwarded_headers(&head, None, &trace());
        assert_eq!(value(&headers, "x-request-id"), ["rid"]);
        assert_eq!(value(&headers, "traceparent"), ["tp"]);
        for dropped in ["connection", "x-hop", "host", "content-length", "spin-full-url"] {
            assert!(value(&headers, dropped).is_empty(), "{dropped}");
        }
        assert_eq!(value(&headers, "authorization"), ["Bearer t"]);
    }
}
