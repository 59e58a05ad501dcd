//! The fault proxy: a test component that stands in front of a service and
//! passes every request through to it, except that it traps (panics, so the
//! host answers 500 and the instance is thrown away) on the first few
//! requests for one path. Tests put it where a service was, under the
//! service's component id, to see what its callers do when that service
//! dies halfway through their work (tests/saga_faults.rs).
//!
//! Configured by component variables (`[component.X] variables = {...}`),
//! so one manifest serves every scenario and a test picks one with
//! `SPIN_VARIABLE_*` overrides of the app variables they are bound to:
//!
//! | Variable            | Meaning                                                        |
//! |---------------------|----------------------------------------------------------------|
//! | `fault_target`      | Required. Base URL requests go to, e.g. `http://products-real.spin.internal` (allow it in `allowed_outbound_hosts`). |
//! | `fault_path_prefix` | Requests whose path starts with it are the ones that trap. Unset or empty: none do. |
//! | `fault_times`       | How many such requests trap (the first N, app-wide); `0` or unset: none. |
//! | `fault_when`        | `before` (default): trap without forwarding, the service never saw the request. `after`: forward, let the service do the work, then trap instead of answering, so the caller cannot tell whether it happened. |
//!
//! The count of matching requests lives in the key-value store `faults`
//! (declare it in `key_value_stores`), under `trapped <prefix>`, and is
//! taken with an atomic increment: each request runs in a fresh instance,
//! and concurrent requests must not both count as the first.
//!
//! Everything else is passed through untouched: method, path and query,
//! headers (except hop-by-hop ones and the `spin-*` ones the host sets for
//! this component, which it sets again for the target) and body; the
//! target's status, headers and body come back the same way. A target that
//! cannot be reached is a 502 naming it.
use spin_sdk::http::{Method, Request, Response, send};
use spin_sdk::http_component;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

/// Headers that describe this hop, not the request: never forwarded.
const HOP_BY_HOP: &[&str] =
    &["host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"];

/// When a matching request traps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Before,
    After,
}

/// The component's variables, read per request.
struct Config {
    target: String,
    prefix: String,
    times: u64,
    when: When,
}

#[http_component]
async fn handle(req: Request) -> Response {
    let config = match Config::read() {
        Ok(config) => config,
        Err(message) => return plain(500, &message),
    };
    let path = req.path().to_string();
    let faulty = !config.prefix.is_empty() && path.starts_with(&config.prefix) && config.times > 0;
    let trap = faulty && take_fault(&config.prefix) <= config.times;
    if trap && config.when == When::Before {
        panic!("fault: trapping on {} {path} before forwarding (fault_when = before)", req.method());
    }
    let response = forward(&config.target, req).await;
    if trap {
        panic!("fault: trapping on {path} after forwarding (status {}; fault_when = after)", response.status());
    }
    response
}

impl Config {
    fn read() -> Result<Config, String> {
        let target = variable("fault_target").filter(|t| !t.is_empty()).ok_or_else(|| {
            "fault: the variable fault_target is not set; bind it in [component.X] variables to the URL to forward to"
                .to_string()
        })?;
        let times = match variable("fault_times").filter(|t| !t.is_empty()) {
            None => 0,
            Some(text) => text.parse().map_err(|_| {
                format!("fault: fault_times = {text:?} is not a count; give a whole number (0 for no faults)")
            })?,
        };
        let when = match variable("fault_when").as_deref() {
            None | Some("") | Some("before") => When::Before,
            Some("after") => When::After,
            Some(other) => return Err(format!("fault: fault_when = {other:?}; use \"before\" or \"after\"")),
        };
        let prefix = variable("fault_path_prefix").unwrap_or_default();
        Ok(Config { target: target.trim_end_matches('/').to_string(), prefix, times, when })
    }
}

/// A component variable; `None` if the component does not bind it.
fn variable(name: &str) -> Option<String> {
    spin_sdk::variables::get(name).ok()
}

/// Counts one more request for `prefix`; returns its number (1 = first).
/// A store that cannot count is a trap too: a test must not silently run
/// without the faults it asked for.
fn take_fault(prefix: &str) -> u64 {
    let bucket = store::open("faults").unwrap_or_else(|e| {
        panic!("fault: cannot open the key-value store \"faults\" (declare it in key_value_stores): {e:?}")
    });
    let count = atomics::increment(&bucket, &format!("trapped {prefix}"), 1)
        .unwrap_or_else(|e| panic!("fault: cannot count requests in the store \"faults\": {e:?}"));
    count as u64
}

/// Sends `req` to the same path and query under `target`.
async fn forward(target: &str, req: Request) -> Response {
    let url = format!("{target}{}", req.path_and_query().unwrap_or("/"));
    let mut builder = Request::builder();
    builder.method(req.method().clone()).uri(url.as_str());
    for (name, value) in req.headers() {
        let name = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str()) || name.starts_with("spin-") {
            continue;
        }
        builder.header(name, String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let method_has_body = !matches!(req.method(), Method::Get | Method::Head);
    let body = req.into_body();
    if method_has_body || !body.is_empty() {
        builder.body(body);
    }
    match send::<_, Response>(builder.build()).await {
        Ok(upstream) => {
            let mut response = Response::builder();
            response.status(*upstream.status());
            for (name, value) in upstream.headers() {
                if !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                    response.header(name, String::from_utf8_lossy(value.as_bytes()).into_owned());
                }
            }
            response.body(upstream.into_body()).build()
        }
        Err(e) => plain(502, &format!("fault: forwarding to {url} failed: {e}")),
    }
}

fn plain(status: u16, text: &str) -> Response {
    Response::builder().status(status).header("content-type", "text/plain").body(format!("{text}\n")).build()
}
