//! End to end: the HTTP trigger as a client sees it — Spin's route matching,
//! the spin-* headers, streamed bodies, and failures that stay contained.
use crate::support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{Bazaar, ServerTiming, Up, app, client, require_components, sample};

fn start_routes() -> Bazaar {
    require_components(&["probe"]);
    Bazaar::start(&app("routes"), Up::default())
}

async fn headers(bazaar: &Bazaar, path: &str) -> (u16, Value) {
    let resp = client().get(bazaar.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Which component answered: the matched route names it.
fn matched(h: &Value) -> &str {
    h["spin-matched-route"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn exact_beats_wildcard_and_the_most_specific_wildcard_wins() {
    let bazaar = start_routes();
    let cases = [
        ("/exact", "/exact"),
        ("/static/special", "/static/special"),
        ("/static/other/headers", "/static/..."),
        ("/static/deep/x/headers", "/static/deep/..."),
        ("/users/42", "/users/:id"),
        ("/users/42/orders/7", "/users/:id/orders/:order"),
        ("/anything/else/headers", "/..."),
        ("/exact/more/headers", "/..."),
    ];
    for (path, route) in cases {
        let (status, h) = headers(&bazaar, path).await;
        assert_eq!(status, 200, "{path}: {h}");
        assert_eq!(matched(&h), route, "{path} should match {route}: {h}");
    }
}

#[tokio::test]
async fn spin_headers_describe_the_match() {
    let bazaar = start_routes();
    let (_, h) = headers(&bazaar, "/static/deep/a/b/headers?x=1").await;
    assert_eq!(h["spin-full-url"], format!("http://127.0.0.1:{}/static/deep/a/b/headers?x=1", bazaar.port));
    assert_eq!(h["spin-path-info"], "/a/b/headers");
    assert_eq!(h["spin-matched-route"], "/static/deep/...");
    assert_eq!(h["spin-raw-component-route"], "/static/deep/...");
    assert_eq!(h["spin-component-route"], "/static/deep");
    assert_eq!(h["spin-base-path"], "/");
    let client_addr = h["spin-client-addr"].as_str().unwrap();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");

    let (_, h) = headers(&bazaar, "/users/ada/orders/1234").await;
    assert_eq!(h["spin-path-match-id"], "ada");
    assert_eq!(h["spin-path-match-order"], "1234");
    assert_eq!(h["spin-path-info"], "");
}

#[tokio::test]
async fn clients_cannot_forge_spin_headers() {
    let bazaar = start_routes();
    let resp = client()
        .get(bazaar.url("/exact"))
        .header("spin-client-addr", "6.6.6.6:1")
        .header("spin-path-match-admin", "true")
        .send()
        .await
        .unwrap();
    let h: Value = resp.json().await.unwrap();
    assert_ne!(h["spin-client-addr"], "6.6.6.6:1");
    assert!(h.get("spin-path-match-admin").is_none(), "{h}");
}

#[tokio::test]
async fn private_routes_are_not_reachable_and_unknown_paths_get_404() {
    require_components(&["probe"]);
    let manifest = app("capabilities");
    let rc = manifest.parent().unwrap().join("runtime-config.toml");
    let bazaar = Bazaar::start(
        &manifest,
        Up::default()
            .arg("--runtime-config-file")
            .arg(rc.to_str().unwrap())
            .env("SPIN_VARIABLE_UPSTREAM_PORT", "1"),
    );
    // capabilities has no catch-all route: an unknown path is a 404 from the host.
    let resp = client().get(bazaar.url("/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("no route matches /nowhere"));
    // `backend` is private: no URL reaches it, whatever the path.
    for path in ["/backend", "/backend/hello", "/hello"] {
        assert_eq!(client().get(bazaar.url(path)).send().await.unwrap().status(), 404, "{path}");
    }
}

#[tokio::test]
async fn reserved_well_known_endpoints() {
    let bazaar = start_routes();
    // Even with a catch-all route, the host answers these itself.
    let resp = client().get(bazaar.url("/.well-known/spin/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let info: Value = client().get(bazaar.url("/.well-known/spin/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["host"], "bazaar");
    assert_eq!(info["application"], "routes");
}

#[tokio::test]
async fn a_ten_mebibyte_body_round_trips() {
    let bazaar = start_routes();
    let body: Vec<u8> = (0..10 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let resp = client().post(bazaar.url("/static/echo")).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.bytes().await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs");
}

#[tokio::test]
async fn a_runaway_component_is_stopped_at_its_deadline_while_others_are_served() {
    require_components(&["probe"]);
    let bazaar = Bazaar::start(&app("routes"), Up::default().arg("--request-timeout").arg("1s"));
    let looping = tokio::spawn({
        let url = bazaar.url("/static/loop");
        async move {
            let started = Instant::now();
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap(), started.elapsed())
        }
    });
    // While one instance spins, others are served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let resp = client().get(bazaar.url("/static/hello")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (status, body, elapsed) = looping.await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("deadline"), "{body}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(bazaar.wait_for_log("deadline"), "{}", bazaar.logs());
    // And the host is still healthy.
    assert_eq!(client().get(bazaar.url("/static/hello")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn components_spinning_on_every_core_do_not_stop_the_host() {
    require_components(&["probe"]);
    let timeout = Duration::from_secs(20);
    let bazaar = Bazaar::start(&app("routes"), Up::default().arg("--request-timeout").arg(format!("{}s", timeout.as_secs())));
    let started = Instant::now();
    // Twice as many spinning instances as the host has worker threads (one
    // a core): without time slices each would hold its thread until its
    // deadline, and nothing else would run meanwhile.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinning = gets_at_once(&bazaar, "/static/loop", 2 * cores);
    let gauge = r#"bazaar_http_requests_in_flight{component="wild"}"#;
    while sample(&bazaar.metrics().await, gauge) < spinning.len() as f64 {
        assert!(started.elapsed() < timeout / 2, "the spinning requests never all started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While they all spin, the others are served, the health check answers,
    // and so does the admin endpoint.
    for _ in 0..5 {
        let resp = client().get(bazaar.url("/static/hello")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let health = client().get(bazaar.url("/.well-known/spin/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(sample(&bazaar.metrics().await, gauge), spinning.len() as f64, "all still spinning");
    assert!(spinning.iter().all(|s| !s.is_finished()), "a spinning request ended early");
    assert!(started.elapsed() < timeout, "served only after the spinning ones' deadline");
}

#[tokio::test]
async fn a_trapping_component_gets_a_500_and_a_logged_reason() {
    let bazaar = start_routes();
    let resp = client().get(bazaar.url("/static/panic")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(body.contains("wild") && body.contains("failed"), "{body}");
    assert!(bazaar.wait_for_log("probe panicked on purpose"), "{}", bazaar.logs());
    assert_eq!(client().get(bazaar.url("/static/hello")).send().await.unwrap().status(), 200);
}

/// The host reserves each instance memory's whole 32-bit space, so the
/// guests' loads and stores carry no bounds checks: a load past the end of
/// the memory, or at the top of the space, must still stop the instance
/// (on a guard page), and the host serves on.
#[tokio::test]
async fn a_guest_reading_past_its_memory_traps_and_the_host_serves_on() {
    let bazaar = start_routes();
    reads_past_memory_trap(&bazaar).await;
    assert!(!bazaar.logs().contains(BOUNDS_CHECKED), "{}", bazaar.logs());
}

/// Where the guard regions' address space is not there (here a `ulimit -v`
/// of 64 GiB, against 162 GiB for 20 instances' guarded memories), the host
/// says so, checks every guest access instead, and traps the same.
#[tokio::test]
async fn without_address_space_for_guard_regions_the_host_bounds_checks_and_says_so() {
    require_components(&["probe"]);
    let up = Up::default().arg("--max-instances").arg("20").address_space_limit(64 << 30);
    let bazaar = Bazaar::start(&app("routes"), up);
    assert!(bazaar.logs().contains(BOUNDS_CHECKED), "{}", bazaar.logs());
    reads_past_memory_trap(&bazaar).await;
}

/// The host's warning when it falls back to bounds checks.
const BOUNDS_CHECKED: &str = "bounds-checking every guest memory access instead";

/// Both of the probe's loads past its memory get a 500 and a logged trap,
/// and the next request is served.
async fn reads_past_memory_trap(bazaar: &Bazaar) {
    for at in ["end", "top"] {
        let id = format!("read-past-{at}");
        let resp = client().get(bazaar.url(&format!("/static/read-past?at={at}"))).header("x-request-id", &id).send().await.unwrap();
        let status = resp.status();
        assert_eq!(status, 500, "at={at}: {}", resp.text().await.unwrap());
        // The failure's line names the request; the trap follows on the
        // lines of its backtrace, up to the next record's timestamp.
        let logged = bazaar.wait_for_logs(|logs| {
            logs.split(&format!("request_id={id} ")).nth(1).is_some_and(|after| {
                let mut record = after.lines();
                let head = record.next().into_iter();
                head.chain(record.take_while(|l| !l.starts_with(|c: char| c.is_ascii_digit())))
                    .any(|l| l.contains("wasm trap: out of bounds memory access"))
            })
        });
        assert!(logged, "no trap logged for {id}: {}", bazaar.logs());
        assert_eq!(client().get(bazaar.url("/static/hello")).send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn a_component_failing_after_its_response_head_cuts_the_body_short_and_is_logged() {
    let bazaar = start_routes();
    let resp = client().get(bazaar.url("/static/half-then-panic")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the head was set before the failure");
    // The client cannot be told more than that the body broke off.
    let body = resp.bytes().await;
    assert!(body.is_err(), "the body must not look complete: {body:?}");
    assert!(bazaar.wait_for_log("component failed after setting its response"), "{}", bazaar.logs());
    assert!(bazaar.logs().contains("probe panicked after its response head"), "{}", bazaar.logs());
    assert_eq!(client().get(bazaar.url("/static/hello")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn instance_memory_is_capped() {
    require_components(&["probe"]);
    let bazaar = Bazaar::start(&app("routes"), Up::default().arg("--max-instance-memory-mb").arg("64"));
    let ok = client().get(bazaar.url("/static/alloc?mb=16")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // The host refuses memory.grow past the cap; the probe reports the
    // failed allocation as 507 out-of-memory instead of crashing.
    let too_much = client().get(bazaar.url("/static/alloc?mb=200")).send().await.unwrap();
    assert_eq!(too_much.status(), 507);
    assert!(too_much.text().await.unwrap().contains("out-of-memory"));
    assert_eq!(client().get(bazaar.url("/static/alloc?mb=16")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn component_output_goes_to_the_host_log_tagged_with_the_component() {
    let bazaar = start_routes();
    let resp = client().get(bazaar.url("/static/log?msg=marker-123")).header("x-request-id", "abc").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "abc", "the response names the request");
    // Stdout and stderr reach the log separately: wait for both.
    assert!(bazaar.wait_for_log("probe-stdout: marker-123"), "{}", bazaar.logs());
    assert!(bazaar.wait_for_log("probe-stderr: marker-123"), "{}", bazaar.logs());
    let logs = bazaar.logs();
    let line = logs.lines().find(|l| l.contains("probe-stdout: marker-123")).unwrap();
    assert!(line.contains("component=wild") && line.contains("stdout"), "{line}");
    // Within the request's span: its id, method and route.
    assert!(line.contains("request_id=abc") && line.contains("method=\"GET\"") && line.contains("route=\"/static/...\""), "{line}");
    let stderr = logs.lines().find(|l| l.contains("probe-stderr: marker-123") && l.contains("stderr"));
    assert!(stderr.is_some_and(|l| l.contains("request_id=abc")), "{logs}");

    // The host's own lines about a request carry its id too.
    let resp = client().get(bazaar.url("/static/panic")).header("x-request-id", "boom-1").send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert!(bazaar.wait_for_log("component failed"), "{}", bazaar.logs());
    let logs = bazaar.logs();
    assert!(logs.lines().any(|l| l.contains("component failed") && l.contains("request_id=boom-1")), "{logs}");

    // No id, or one that could forge a log line: a new one, sent back.
    for given in [None, Some("bad id\"x")] {
        let mut req = client().get(bazaar.url("/static/log?msg=no-id"));
        if let Some(id) = given {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(bazaar.wait_for_log(&format!("request_id={id}")), "{}", bazaar.logs());
    }
}

#[tokio::test]
async fn over_the_concurrency_limit_requests_wait_their_turn_and_health_checks_do_not() {
    require_components(&["probe"]);
    let bazaar = Bazaar::start(&app("routes"), Up::default().arg("--max-concurrent-requests").arg("1"));
    const QUEUED: &str = "bazaar_http_requests_queued";
    let queued = || async { sample(&bazaar.metrics().await, QUEUED) };
    let text = bazaar.metrics().await;
    assert!(text.contains(&format!("{QUEUED} 0")), "{text}");
    let started = Instant::now();
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let url = bazaar.url("/static/sleep?ms=700");
            tokio::spawn(async move {
                let resp = client().get(url).send().await.unwrap();
                (resp.status().as_u16(), started.elapsed())
            })
        })
        .collect();
    // One is served, two wait at the door.
    while queued().await < 2.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the requests never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The host answers its health check meanwhile, ahead of the line.
    let health = client().get(bazaar.url("/.well-known/spin/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(queued().await >= 1.0, "the health check waited for the queued requests");
    let mut done = Vec::new();
    for sleeper in sleepers {
        let (status, elapsed) = sleeper.await.unwrap();
        assert_eq!(status, 200);
        done.push(elapsed);
    }
    // One at a time: the last finished no sooner than three sleeps.
    done.sort();
    assert!(done[2] >= Duration::from_millis(3 * 700), "served side by side: {done:?}");
    assert_eq!(queued().await, 0.0);
    // The wait at the door is measured: the second waited one sleep, the
    // third two.
    let text = bazaar.metrics().await;
    assert_eq!(sample(&text, "bazaar_http_admission_wait_seconds_count"), 3.0, "{text}");
    let waited = sample(&text, "bazaar_http_admission_wait_seconds_sum");
    assert!(waited >= 1.0, "waited {waited} s in all");
}

/// A response's `server-timing` field.
fn server_timing(resp: &reqwest::Response) -> ServerTiming {
    let field = resp.headers().get("server-timing").expect("a server-timing field").to_str().unwrap();
    ServerTiming::parse(field).unwrap_or_else(|| panic!("no read time, queue and app durations in {field}"))
}

#[tokio::test]
async fn with_server_timing_a_response_says_how_long_it_waited_at_the_door_and_then_ran() {
    require_components(&["probe"]);
    // Off by default.
    let plain = start_routes();
    let resp = client().get(plain.url("/static/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("server-timing").is_none(), "{:?}", resp.headers());
    drop(plain);

    let bazaar = Bazaar::start(&app("routes"), Up::default().arg("--max-concurrent-requests").arg("1").arg("--server-timing"));
    // A sleeper takes the one place; a hello sent while it holds it waits.
    let sleeper = {
        let url = bazaar.url("/static/sleep?ms=800");
        tokio::spawn(async move { client().get(url).send().await.unwrap() })
    };
    let in_flight = "bazaar_http_requests_in_flight{component=\"wild\"}";
    let started = Instant::now();
    while sample(&bazaar.metrics().await, in_flight) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the sleeper never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (sent, sent_wall) = (Instant::now(), SystemTime::now());
    let hello = client().get(bazaar.url("/static/hello")).send().await.unwrap();
    let total = sent.elapsed().as_secs_f64() * 1e3;
    let sleeper = sleeper.await.unwrap();
    assert_eq!((sleeper.status().as_u16(), hello.status().as_u16()), (200, 200));

    let ServerTiming { queue_ms: sleeper_queue, app_ms: sleeper_app, .. } = server_timing(&sleeper);
    assert!(sleeper_queue < 100.0, "the sleeper found the door open: {sleeper_queue} ms");
    assert!(sleeper_app >= 800.0, "the sleeper ran {sleeper_app} ms");
    let hello_timing = server_timing(&hello);
    let ServerTiming { queue_ms: hello_queue, app_ms: hello_app, .. } = hello_timing;
    // It waited for what was left of the sleep, then ran in no time; the
    // parts add up to no more than the client saw.
    assert!(hello_queue >= 300.0, "the hello waited {hello_queue} ms");
    assert!(hello_app < hello_queue, "the hello ran {hello_app} ms after waiting {hello_queue}");
    assert!(hello_queue + hello_app <= total, "{hello_queue} + {hello_app} ms, the client saw {total}");
    // The host read it by this machine's wall clock after it was sent, and
    // early enough to leave the wait and the run within what the client
    // saw (a millisecond of leeway: the clocks are read microseconds
    // apart, and the field gives whole microseconds).
    let read = hello_timing.read_after(sent_wall);
    assert!(read >= -1.0, "read {read} ms before it was sent");
    assert!(read + hello_queue + hello_app <= total + 1.0, "read after {read} ms, then {hello_queue} + {hello_app} ms; the client saw {total}");
}

#[tokio::test]
async fn an_adaptive_limit_rises_while_requests_wait_on_io_and_falls_while_they_spin() {
    require_components(&["probe"]);
    let timeout = Duration::from_secs(4);
    let up = Up::default().arg("--max-concurrent-requests").arg("auto").arg("--request-timeout").arg(format!("{}s", timeout.as_secs()));
    let bazaar = Bazaar::start(&app("routes"), up);
    const LIMIT: &str = "bazaar_http_admission_limit";
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let limit = || async { sample(&bazaar.metrics().await, LIMIT) };
    assert_eq!(limit().await, (2 * cores) as f64, "it starts at 2 per core");

    // Requests that wait without working (on a timer) leave the cores idle:
    // the limit rises to let the ones at the door in.
    let sleepers = gets_at_once(&bazaar, "/static/sleep?ms=1500", 8 * cores);
    let started = Instant::now();
    while limit().await <= (2 * cores) as f64 {
        assert!(started.elapsed() < Duration::from_secs(10), "the limit never rose above where it started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for sleeper in sleepers {
        assert_eq!(sleeper.await.unwrap(), 200);
    }

    // Requests that keep the cores busy (each spins until its deadline)
    // make the woken ones wait: the limit falls, down to one per core.
    let spinning = gets_at_once(&bazaar, "/static/loop", 2 * cores);
    let started = Instant::now();
    while limit().await > cores as f64 {
        assert!(started.elapsed() < timeout, "the limit stayed at {} while {} spun", limit().await, spinning.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for spinner in spinning {
        assert_ne!(spinner.await.unwrap(), 200, "a spinning request ends at its deadline");
    }
    // Served as before once they are gone.
    assert_eq!(client().get(bazaar.url("/static/hello")).send().await.unwrap().status(), 200);
}

/// `n` GETs of `path` sent at once; each task gives its status.
fn gets_at_once(bazaar: &Bazaar, path: &str, n: usize) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let url = bazaar.url(path);
            tokio::spawn(async move { client().get(url).send().await.unwrap().status().as_u16() })
        })
        .collect()
}

#[tokio::test]
async fn a_concurrency_limit_that_is_not_a_number_is_refused_with_the_flag_named() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bazaar"))
        .args(["up", "--from"])
        .arg(app("routes"))
        .args(["--max-concurrent-requests", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-concurrent-requests") && stderr.contains("`off`"), "{stderr}");
}
