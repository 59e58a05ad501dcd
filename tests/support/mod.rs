//! Test harness: starts the real `bazaar` binary on a free port and talks to
//! it over HTTP, the way a user would.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod cards;
pub mod consistency;
pub mod postgres;
pub mod shop;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A test app manifest under tests/apps.
pub fn app(name: &str) -> PathBuf {
    root().join("tests/apps").join(name).join("spin.toml")
}

/// The Redis databases (of 0–15) that tests own. Every test module runs in
/// one binary, side by side, and a test flushes its databases before and
/// after: no two tests may share one. 0 and 1 belong to tests that keep to
/// key prefixes of their own instead of flushing.
pub mod redis_dbs {
    /// gateway.rs, production mode: the `gateway` and `gateway-cache` stores.
    pub const GATEWAY_STORES: (u8, u8) = (7, 8);
    /// admin.rs: readyz with production's stores and bus.
    pub const ADMIN_READYZ: u8 = 9;
    /// shop.rs, production mode: one each for its three tests.
    pub const SHOP_HAPPY_PATH: u8 = 11;
    pub const SHOP_DECLINED: u8 = 12;
    pub const SHOP_LAST_UNIT: u8 = 13;
    /// consistency.rs, production mode.
    pub const CONSISTENCY: u8 = 14;
    // 15: the shop_mix benchmark (host/benches/shop_mix), never run beside the tests.
}

/// Fails with instructions when the test components are not built.
pub fn require_components(names: &[&str]) {
    for name in names {
        let wasm = root().join("target/wasm32-wasip2/release").join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "{} is missing: run `make test` (or `make wasm`) so the components are built",
            wasm.display()
        );
    }
}

/// Fails with how to start it when no Redis server listens on 127.0.0.1:6379.
pub fn require_redis() {
    let ok = std::net::TcpStream::connect("127.0.0.1:6379").is_ok();
    assert!(ok, "Redis is not running on 127.0.0.1:6379; start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no");
}

/// runtime-config/embedded.toml with its files in `dir` instead of the
/// app's .bazaar/, so a test has a shop of its own.
pub fn embedded_runtime_config(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("runtime-config/embedded.toml")).unwrap();
    let text = text.replace("path = \".bazaar/", &format!("path = \"{}/", dir.display()));
    let path = dir.join("embedded.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// runtime-config/production.toml with its Redis URLs on database `db`,
/// so a test's stores and bus are its own (Postgres URLs come from the
/// variables the test sets).
pub fn production_runtime_config(dir: &Path, db: u8) -> PathBuf {
    let text = std::fs::read_to_string(root().join("runtime-config/production.toml")).unwrap();
    let text = text.replace("redis://127.0.0.1:6379\"", &format!("redis://127.0.0.1:6379/{db}\""));
    let path = dir.join("production.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An answer: its status and JSON body (text when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body, once the status is `status` (else the test fails, showing it).
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        self.body
    }
}

/// A free port on loopback (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `bazaar up`; killed when dropped.
pub struct Bazaar {
    child: Child,
    pub port: u16,
    pub base: String,
    /// The admin endpoint, `http://127.0.0.1:PORT` (each test host gets a
    /// free port of its own, so hosts can run side by side).
    pub admin: String,
    logs: Arc<Mutex<String>>,
}

/// How to start bazaar.
#[derive(Default, Clone)]
pub struct Up {
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub state_dir: Option<PathBuf>,
    pub port: Option<u16>,
    /// The process's address-space limit in bytes (`ulimit -v`).
    pub address_space_limit: Option<u64>,
}

impl Up {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn address_space_limit(mut self, bytes: u64) -> Self {
        self.address_space_limit = Some(bytes);
        self
    }
}

pub fn bazaar_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bazaar"));
    cmd.env("BAZAAR_LOG", "info").env_remove("RUST_LOG");
    cmd
}

impl Bazaar {
    /// Starts `bazaar up --from manifest` and waits until it serves.
    ///
    /// Ports the harness picked itself ([`free_port`]: bound, then released)
    /// can be taken by another test before bazaar binds them; then it tries
    /// again with new ones, a few times.
    pub fn start(manifest: &Path, up: Up) -> Bazaar {
        let mut tries = if up.port.is_none() { 3 } else { 1 };
        loop {
            tries -= 1;
            match Self::try_start(manifest, up.clone()) {
                Ok(bazaar) => return bazaar,
                Err(logs) if tries > 0 && logs.contains("Address already in use") => continue,
                Err(logs) => panic!("bazaar did not start:\n{logs}"),
            }
        }
    }

    /// Like [`Bazaar::start`], but returns the output if bazaar exits.
    pub fn try_start(manifest: &Path, up: Up) -> Result<Bazaar, String> {
        let port = up.port.unwrap_or_else(free_port);
        let mut cmd = bazaar_command();
        cmd.arg("up").arg("--from").arg(manifest).arg("--listen").arg(format!("127.0.0.1:{port}"));
        if let Some(dir) = &up.state_dir {
            cmd.arg("--state-dir").arg(dir);
        }
        // Two calls may return the same released port: the admin endpoint
        // must not take the listener's.
        let admin_port = std::iter::repeat_with(free_port).find(|p| *p != port).unwrap();
        if !up.args.iter().any(|a| a == "--admin-listen") {
            cmd.arg("--admin-listen").arg(format!("127.0.0.1:{admin_port}"));
        }
        cmd.args(&up.args);
        for (k, v) in &up.envs {
            cmd.env(k, v);
        }
        if let Some(bytes) = up.address_space_limit {
            let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            // SAFETY: setrlimit is async-signal-safe, and the closure only
            // reads a value copied into it.
            unsafe {
                cmd.pre_exec(move || match libc::setrlimit(libc::RLIMIT_AS, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning bazaar");
        let logs = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/.well-known/spin/health");
        let started = Instant::now();
        // A cold compile of a component can take a while on a 2-core machine.
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(_)) = child.try_wait() {
                // Let the reader threads collect the last of the output.
                std::thread::sleep(Duration::from_millis(100));
                return Err(logs.lock().unwrap().clone());
            }
            if let Ok(200) = ureq_get(&health) {
                let admin = format!("http://127.0.0.1:{admin_port}");
                return Ok(Bazaar { child, port, base, admin, logs });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("not serving after 120s:\n{}", logs.lock().unwrap()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request straight to a service, as the gateway would forward
    /// it: as `user` (`x-user-id`) when given, with `headers` (a role, an
    /// Idempotency-Key) and `body` as JSON.
    pub async fn send_as(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = client().request(method.parse().unwrap(), self.url(path));
        if let Some(user) = user {
            request = request.header("x-user-id", user);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{}", self.admin, path)
    }

    /// The admin endpoint's `/metrics`, as Prometheus text.
    pub async fn metrics(&self) -> String {
        client().get(self.admin_url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Everything bazaar printed so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (logs arrive asynchronously).
    pub fn wait_for_log(&self, needle: &str) -> bool {
        self.wait_for_logs(|logs| logs.contains(needle))
    }

    /// Waits until `seen` holds of the log, for up to 5 s.
    pub fn wait_for_logs(&self, seen: impl Fn(&str) -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if seen(&self.logs()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Bazaar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal blocking GET used only for the readiness probe: returns the status.
fn ureq_get(url: &str) -> Result<u16, std::io::Error> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap();
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf)?;
    buf.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("bad response"))
}

/// An HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// GET `path`: the status and the body as text.
pub async fn get(b: &Bazaar, path: &str) -> (u16, String) {
    let resp = client().get(b.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// PUT `body` at `path`: the status.
pub async fn put(b: &Bazaar, path: &str, body: &str) -> u16 {
    client().put(b.url(path)).body(body.to_string()).send().await.unwrap().status().as_u16()
}

/// POST `body` as JSON to `path`: the status and the JSON answer (`Null`
/// when the answer is not JSON).
pub async fn post_json(b: &Bazaar, path: &str, body: Value) -> (u16, Value) {
    let resp = client().post(b.url(path)).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends `method path` to `b` with an optional bearer `token` and JSON
/// `body`: the status and the JSON answer (`Null` when the answer is not
/// JSON).
pub async fn call(b: &Bazaar, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    raw_call(&b.base, method, path, token, body).await
}

/// GET `path` as the holder of `token`, asking every cache on the way for a
/// fresh answer (`Cache-Control: no-cache`): the gateway's catalog cache
/// may otherwise serve one up to its TTL old.
pub async fn get_fresh(b: &Bazaar, path: &str, token: &str) -> (u16, Value) {
    let resp = client().get(b.url(path)).bearer_auth(token).header("cache-control", "no-cache").send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Registers `email` (named `name`, password `correct horse battery`) with
/// the shop's auth service and logs in: the access token.
pub async fn register_and_login(b: &Bazaar, email: &str, name: &str) -> String {
    let password = "correct horse battery";
    let (s, v) = call(b, "POST", "/api/auth/register", None, Some(serde_json::json!({"email": email, "password": password, "name": name}))).await;
    assert_eq!(s, 201, "register: {v}");
    let (s, v) = call(b, "POST", "/api/auth/login", None, Some(serde_json::json!({"email": email, "password": password}))).await;
    assert_eq!(s, 200, "login: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// The value of the sample `name` (with its labels, as exposed) in the
/// Prometheus text `text`; 0 when it is not there.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A response's `server-timing` from `bazaar up --server-timing`: when
/// the host read the request (its wall clock), how long it then held the
/// request at its door, then took to its response head.
#[derive(Clone, Copy, Debug)]
pub struct ServerTiming {
    pub read_at: std::time::SystemTime,
    pub queue_ms: f64,
    pub app_ms: f64,
}

impl ServerTiming {
    /// From `read;desc="...";at=1765094400123456, queue;dur=12.250;desc="...",
    /// app;dur=3.125;desc="..."`.
    pub fn parse(field: &str) -> Option<ServerTiming> {
        let param = |name: &str, param: &str| {
            field.split(',').find_map(|metric| {
                let mut params = metric.trim().split(';');
                (params.next()? == name).then_some(())?;
                params.find_map(|p| p.trim().strip_prefix(param))
            })
        };
        let read_at = std::time::Duration::from_micros(param("read", "at=")?.parse().ok()?);
        Some(ServerTiming {
            read_at: std::time::SystemTime::UNIX_EPOCH + read_at,
            queue_ms: param("queue", "dur=")?.parse().ok()?,
            app_ms: param("app", "dur=")?.parse().ok()?,
        })
    }

    /// Milliseconds from `sent` (a clock reading of this machine's) to the
    /// host's reading of the request: how long it lay unread.
    pub fn read_after(&self, sent: std::time::SystemTime) -> f64 {
        match self.read_at.duration_since(sent) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        }
    }
}

/// Adds `quantity` of `sku` to the cart of `token`'s holder and checks out
/// with the card `card_number` (see [`cards`]): the checkout's status and
/// answer. The add to cart must succeed.
pub async fn add_and_check_out(b: &Bazaar, token: &str, sku: &str, quantity: i64, card_number: &str) -> (u16, Value) {
    let item = serde_json::json!({"sku": sku, "quantity": quantity});
    let (s, v) = call(b, "POST", "/api/cart/items", Some(token), Some(item)).await;
    assert!(s == 200 || s == 201, "add to cart: {s} {v}");
    call(b, "POST", "/api/orders/checkout", Some(token), Some(serde_json::json!({"card": cards::card(card_number)}))).await
}

/// [`call`] by base URL (`http://host:port`), for tasks that do not hold
/// the [`Bazaar`].
pub async fn raw_call(base: &str, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
