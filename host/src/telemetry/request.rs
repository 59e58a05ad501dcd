//! What identifies one HTTP request across logs, components and traces:
//! its request id and its place in a distributed trace.
//!
//! Every request the HTTP trigger serves (from the network or chained from
//! another component) gets a [`RequestContext`] and a tracing span,
//! `request{request_id trace_id component method route}`, so every log line
//! written while it runs (the host's own and the component's stdout and
//! stderr) carries them:
//! - the request id is the incoming `x-request-id` when it is sane (at most
//!   128 characters of `A-Za-z0-9` and `-_.:/+=@`), else a new random one;
//! - the trace is the incoming W3C `traceparent`'s when it is valid, else a
//!   new one; this request is a new span of it.
//!
//! The component sees both in its request headers (`traceparent` naming
//! this request's span as the parent, so a component that forwards it
//! itself links its calls correctly), and the response carries
//! `x-request-id`. Requests the instance sends (chained and outbound HTTP)
//! get a `traceparent` with the same trace id and this request's span id,
//! unless the component set one itself; chained requests also keep the
//! request id, so one id follows a request through every component.
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::traceparent::{self, MAX_STATE_LEN, SAMPLED, TraceParent};

pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// The target of request spans, which the OTLP exporter exports.
pub const SPAN_TARGET: &str = "bazaar::request";

/// One request's identity, shared with the instance that serves it.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub request_id: String,
    /// This request's span: the trace it belongs to and, as `parent_id`,
    /// its own span id (the parent of whatever it calls).
    pub trace: TraceParent,
    /// The incoming `tracestate`, passed on with the trace.
    pub tracestate: Option<HeaderValue>,
}

impl RequestContext {
    /// Starts a request: reads (or makes) its id and trace from `headers`,
    /// opens its span, and rewrites `headers` so the component sees them.
    pub fn begin(headers: &mut HeaderMap, component: &str, method: &str, route: &str) -> (Arc<Self>, Span) {
        let request_id = match headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()) {
            Some(id) if is_sane_request_id(id) => id.to_string(),
            _ => hex::encode(traceparent::random_trace_id()),
        };
        let incoming = incoming_traceparent(headers);
        // Without the exporter the trace is known before the span, which
        // then gets its trace id as it is made: recording it afterwards
        // formats the span's fields for the log a second time.
        let local = (!super::exporting()).then(|| local_trace(incoming.as_ref()));
        let trace_id = local.as_ref().map(TraceParent::trace_id_hex);
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            parent: None,
            "request",
            request_id = %request_id,
            trace_id = trace_id.as_deref(),
            component,
            method,
            route,
            status = tracing::field::Empty,
        );
        let trace = match local {
            Some(trace) => trace,
            None => {
                let trace = trace_of(&span, incoming.as_ref());
                span.record("trace_id", trace.trace_id_hex());
                trace
            }
        };
        let tracestate = match incoming {
            Some(_) => headers.get(traceparent::STATE_HEADER).filter(|v| v.len() <= MAX_STATE_LEN).cloned(),
            None => None,
        };

        set(headers, REQUEST_ID_HEADER, request_id.as_bytes());
        set(headers, traceparent::HEADER, &trace.encode());
        match &tracestate {
            Some(state) => {
                headers.insert(traceparent::STATE_HEADER, state.clone());
            }
            // Vendor data of a trace not honoured belongs to no trace.
            None => {
                headers.remove(traceparent::STATE_HEADER);
            }
        }
        (Arc::new(Self { request_id, trace, tracestate }), span)
    }

    /// Adds this request's trace (and, for a `chained` request, its id) to
    /// a request the instance sends, where the component did not set them.
    pub fn propagate(&self, headers: &mut HeaderMap, chained: bool) {
        if !headers.contains_key(traceparent::HEADER) {
            set(headers, traceparent::HEADER, &self.trace.encode());
            if let Some(state) = &self.tracestate
                && !headers.contains_key(traceparent::STATE_HEADER)
            {
                headers.insert(traceparent::STATE_HEADER, state.clone());
            }
        }
        if chained && !headers.contains_key(REQUEST_ID_HEADER) {
            set(headers, REQUEST_ID_HEADER, self.request_id.as_bytes());
        }
    }
}

/// The request's `traceparent`, if there is exactly one and it is valid.
fn incoming_traceparent(headers: &HeaderMap) -> Option<TraceParent> {
    let mut values = headers.get_all(traceparent::HEADER).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    TraceParent::parse(first.to_str().ok()?.trim())
}

/// The span's place in its trace. With the OTLP exporter on, the
/// OpenTelemetry layer owns the span's ids (so what is exported and what
/// is propagated agree) and decides whether it is sampled; without it, the
/// ids are made here ([`local_trace`]).
fn trace_of(span: &Span, incoming: Option<&TraceParent>) -> TraceParent {
    if let Some(parent) = incoming {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags & SAMPLED),
            true,
            TraceState::default(),
        );
        // Fails only without the layer, when there is nothing to link.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let otel = cx.span().span_context().clone();
    if otel.is_valid() {
        return TraceParent {
            trace_id: otel.trace_id().to_bytes(),
            parent_id: otel.span_id().to_bytes(),
            flags: otel.trace_flags().to_u8() & SAMPLED,
        };
    }
    local_trace(incoming)
}

/// A request's place in its trace when no exporter owns the ids: a new
/// span of the incoming trace, or of a new sampled one.
fn local_trace(incoming: Option<&TraceParent>) -> TraceParent {
    let span_id = traceparent::random_span_id();
    match incoming {
        Some(parent) => parent.child(span_id),
        None => TraceParent { trace_id: traceparent::random_trace_id(), parent_id: span_id, flags: SAMPLED },
    }
}

/// Short enough for a log line and free of anything that could forge one.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn begin(pairs: &[(&'static str, &str)]) -> (Arc<RequestContext>, HeaderMap) {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let (ctx, _span) = RequestContext::begin(&mut headers, "c", "GET", "/x");
        (ctx, headers)
    }

    #[test]
    fn a_sane_request_id_is_kept_and_others_replaced() {
        let (ctx, headers) = begin(&[("x-request-id", "abc-123")]);
        assert_eq!(ctx.request_id, "abc-123");
        assert_eq!(headers["x-request-id"], "abc-123");
        for bad in ["", "has space", "quote\"s", "a;b=c", &"x".repeat(129)] {
            let (ctx, headers) = begin(&[("x-request-id", bad)]);
            assert_eq!(ctx.request_id.len(), 32, "{bad:?}");
            assert_eq!(headers["x-request-id"], ctx.request_id.as_str());
        }
    }

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_span() {
        let (ctx, headers) = begin(&[("traceparent", INCOMING), ("tracestate", "vendor=1")]);
        assert_eq!(ctx.trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(hex::encode(ctx.trace.parent_id), "00f067aa0ba902b7");
        // The component sees this request's span as the parent.
        assert_eq!(headers["traceparent"], ctx.trace.to_string().as_str());
        assert_eq!(headers["tracestate"], "vendor=1");
    }

    #[test]
    fn an_invalid_or_repeated_traceparent_starts_a_new_trace() {
        let upper = INCOMING.to_uppercase();
        for pairs in [
            vec![("traceparent", upper.as_str()), ("tracestate", "vendor=1")],
            vec![("traceparent", INCOMING), ("traceparent", INCOMING)],
        ] {
            let (ctx, headers) = begin(&pairs);
            assert_ne!(ctx.trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(TraceParent::parse(headers["traceparent"].to_str().unwrap()).is_some());
            assert!(!headers.contains_key("tracestate"));
        }
    }

    #[test]
    fn outgoing_requests_get_the_trace_unless_the_component_set_one() {
        let (ctx, _) = begin(&[("traceparent", INCOMING), ("x-request-id", "abc")]);
        let mut out = HeaderMap::new();
        ctx.propagate(&mut out, false);
        assert_eq!(out["traceparent"], ctx.trace.to_string().as_str());
        assert!(!out.contains_key("x-request-id"), "the id stays inside the app");

        let mut chained = HeaderMap::new();
        ctx.propagate(&mut chained, true);
        assert_eq!(chained["x-request-id"], "abc");

        let own = "00-11111111111111111111111111111111-2222222222222222-00";
        let mut set = HeaderMap::new();
        set.insert("traceparent", HeaderValue::from_static(own));
        ctx.propagate(&mut set, true);
        assert_eq!(set["traceparent"], own);
    }
}
