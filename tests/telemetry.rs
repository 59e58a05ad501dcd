//! End to end: what the host tells its operators about requests besides
//! metrics — JSON log lines carrying the request id, the W3C `traceparent`
//! honoured and passed on to chained and outbound calls, and request spans
//! exported to an OTLP collector (a small HTTP server in the test).
use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use support::{Bazaar, Up, app, client, free_port, require_components};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn incoming_traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// `(trace id, parent id, flags)` of a valid version-00 `traceparent`.
fn parts(traceparent: &str) -> (String, String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!((fields[0], fields[1].len(), fields[2].len()), ("00", 32, 16), "{traceparent}");
    (fields[1].into(), fields[2].into(), fields[3].into())
}

/// One request a [`Recorder`] received.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

/// A small HTTP server that answers 200 `{}` to everything and keeps what
/// it was sent: an upstream service, or an OTLP collector.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        log.lock().unwrap().push(Recorded {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            headers: parts.headers,
                            body,
                        });
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) for a request matching `f`.
    async fn wait_for(&self, what: &str, f: impl Fn(&Recorded) -> bool) -> Recorded {
        let started = Instant::now();
        loop {
            if let Some(r) = self.seen().into_iter().find(|r| f(r)) {
                return r;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no {what} within 30s; got {:?}", self.seen());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start_examples(up: Up) -> Bazaar {
    require_components(&["probe"]);
    Bazaar::start(&app("examples"), up)
}

/// What the probe's `POST /probe/fetch` got back: the callee's status and body.
async fn fetch(bazaar: &Bazaar, incoming: &[(&str, &str)], spec: Value) -> Value {
    let mut req = client().post(bazaar.url("/probe/fetch")).json(&spec);
    for (name, value) in incoming {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let fetched: Value = resp.json().await.unwrap();
    assert_eq!(fetched["status"], 200, "{fetched}");
    fetched
}

/// The request headers the chained `backend` (the probe) saw.
async fn backend_headers(bazaar: &Bazaar, incoming: &[(&str, &str)], own: Value) -> Value {
    let spec = json!({"method": "GET", "url": "http://backend.spin.internal/headers", "headers": own});
    let fetched = fetch(bazaar, incoming, spec).await;
    serde_json::from_str(fetched["body"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let bazaar = start_examples(Up::default().arg("--log-format").arg("json"));
    let resp = client().get(bazaar.url("/probe/log?msg=json-marker")).header("x-request-id", "abc").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(bazaar.wait_for_log("probe-stdout: json-marker"), "{}", bazaar.logs());
    let logs = bazaar.logs();
    let line = logs.lines().find(|l| l.contains("probe-stdout: json-marker")).unwrap();
    let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(entry["fields"]["message"], "probe-stdout: json-marker", "{entry}");
    assert_eq!(entry["fields"]["stream"], "stdout", "{entry}");
    assert_eq!(entry["span"]["name"], "request", "{entry}");
    assert_eq!(entry["span"]["request_id"], "abc", "{entry}");
    assert_eq!(entry["span"]["component"], "probe", "{entry}");
    assert_eq!(entry["span"]["route"], "/probe/...", "{entry}");
    assert_eq!(entry["span"]["trace_id"].as_str().unwrap().len(), 32, "{entry}");
    // Every line is JSON, the start-up ones included (stdout's banner aside).
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

#[tokio::test]
async fn a_chained_call_continues_the_incoming_trace() {
    let bazaar = start_examples(Up::default());
    let traceparent = incoming_traceparent();
    let incoming = [("traceparent", traceparent.as_str()), ("tracestate", "vendor=1"), ("x-request-id", "chain-1")];
    let seen = backend_headers(&bazaar, &incoming, json!({})).await;
    let (trace_id, parent_id, flags) = parts(seen["traceparent"].as_str().unwrap());
    assert_eq!(trace_id, TRACE_ID, "{seen}");
    assert_ne!(parent_id, PARENT_ID, "each hop is a span of its own: {seen}");
    assert_eq!(flags, "01", "{seen}");
    assert_eq!(seen["tracestate"], "vendor=1", "{seen}");
    assert_eq!(seen["x-request-id"], "chain-1", "one id through the chain: {seen}");

    // A traceparent the component sets itself is the one sent.
    let own = "00-11111111111111111111111111111111-2222222222222222-01";
    let seen = backend_headers(&bazaar, &incoming, json!({"traceparent": own})).await;
    assert_eq!(parts(seen["traceparent"].as_str().unwrap()).0, "11111111111111111111111111111111", "{seen}");

    // An invalid one (uppercase hex) is not honoured: a new trace, valid.
    let upper = traceparent.to_uppercase();
    let seen = backend_headers(&bazaar, &[("traceparent", upper.as_str()), ("tracestate", "vendor=1")], json!({})).await;
    let (trace_id, _, _) = parts(seen["traceparent"].as_str().unwrap());
    assert_ne!(trace_id, TRACE_ID, "{seen}");
    assert!(trace_id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{seen}");
    assert!(seen.get("tracestate").is_none(), "vendor data of a trace not honoured is dropped: {seen}");

    // None at all: a new trace all the same, which the callee continues.
    let seen = backend_headers(&bazaar, &[], json!({})).await;
    assert_ne!(parts(seen["traceparent"].as_str().unwrap()).0, TRACE_ID, "{seen}");
}

#[tokio::test]
async fn an_outbound_call_carries_the_trace() {
    require_components(&["probe"]);
    let upstream = Recorder::start().await;
    let state = tempfile::tempdir().unwrap();
    let manifest = app("capabilities");
    let rc = manifest.parent().unwrap().join("runtime-config.toml");
    let bazaar = Bazaar::start(
        &manifest,
        Up::default()
            .state_dir(state.path())
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .env("SPIN_VARIABLE_UPSTREAM_PORT", upstream.addr.port().to_string()),
    );
    let traceparent = incoming_traceparent();
    let url = format!("http://127.0.0.1:{}/traced", upstream.addr.port());
    fetch(&bazaar, &[("traceparent", &traceparent), ("x-request-id", "out-1")], json!({"url": url})).await;
    let sent = upstream.wait_for("request upstream", |r| r.path == "/traced").await;
    let (trace_id, parent_id, _) = parts(sent.headers["traceparent"].to_str().unwrap());
    assert_eq!(trace_id, TRACE_ID);
    assert_ne!(parent_id, PARENT_ID);
    assert!(!sent.headers.contains_key("x-request-id"), "the request id stays inside the app");
}

#[tokio::test]
async fn request_spans_are_exported_to_an_otlp_collector() {
    let collector = Recorder::start().await;
    let bazaar = start_examples(
        Up::default()
            .arg("--otlp-endpoint")
            .arg(format!("http://{}", collector.addr))
            // Export every 100 ms instead of every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    );
    let traceparent = incoming_traceparent();
    let resp = client()
        .get(bazaar.url("/probe/headers"))
        .header("traceparent", &traceparent)
        .header("x-request-id", "otlp-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    // The span id the component was given is the exported span's.
    let (trace_id, span_id, _) = parts(seen["traceparent"].as_str().unwrap());
    assert_eq!(trace_id, TRACE_ID, "{seen}");

    let export = collector.wait_for("POST /v1/traces", |r| r.method == "POST" && r.path == "/v1/traces").await;
    assert_eq!(export.headers["content-type"], "application/x-protobuf");
    let body = &export.body;
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&hex::decode(TRACE_ID).unwrap()), "the incoming trace's id is exported");
    assert!(contains(&hex::decode(&span_id).unwrap()), "the request's span id is exported");
    assert!(contains(&hex::decode(PARENT_ID).unwrap()), "with the caller's span as its parent");
    assert!(contains(b"otlp-1") && contains(b"/probe/..."), "with the request id and route");
    assert!(contains(b"bazaar"), "service.name");
}

#[test]
fn an_https_otlp_endpoint_is_refused_with_the_fix() {
    let port = free_port();
    let output = support::bazaar_command()
        .args(["up", "--from"])
        .arg(app("examples"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--admin-listen", "off"])
        .args(["--otlp-endpoint", "https://collector.example:4318"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("plain http://"), "{stderr}");
}
