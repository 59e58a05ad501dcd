//! End to end: replacing a component of a running host. Under a steady
//! load, swaps and a rollback fail no request and each new request sees the
//! new version; a build that does not compile, link, export what its
//! trigger calls or pass its smoke request is refused while the old one
//! keeps serving; `bazaar up --watch` swaps a rebuilt wasm by itself.
use crate::support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Bazaar, Up, app, bazaar_command, client, require_components, root};

const TOKEN: &str = "hot-swap-test-token";
const V1: &str = "Hello from Bazaar!\n";
const V2: &str = "Hello from Bazaar v2!\n";

fn wasm(name: &str) -> PathBuf {
    root().join("target/wasm32-wasip2/release").join(format!("{name}.wasm"))
}

fn start(state: &Path) -> Bazaar {
    require_components(&["hello", "hello_v2", "probe", "subscriber"]);
    Bazaar::start(&app("examples"), Up::default().state_dir(state).arg("--admin-token").arg(TOKEN))
}

/// POSTs the wasm at `file` to the swap endpoint: the status and the JSON answer.
async fn swap(b: &Bazaar, component: &str, file: &Path, query: &str) -> (u16, Value) {
    let body = std::fs::read(file).unwrap();
    admin_post(b, &format!("/admin/components/{component}/swap{query}"), body).await
}

async fn admin_post(b: &Bazaar, path: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = client().post(b.admin_url(path)).bearer_auth(TOKEN).body(body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn hello(b: &Bazaar) -> String {
    let resp = client().get(b.url("/hello")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// Client tasks that GET /hello until stopped, counting answers and failures.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(b: &Bazaar, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, served, failures, url) = (stop.clone(), served.clone(), failures.clone(), b.url("/hello"));
                tokio::spawn(async move {
                    let client = client();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match client.get(&url).send().await {
                            Ok(resp) if resp.status() == 200 => match resp.text().await {
                                Ok(body) if body == V1 || body == V2 => Ok(()),
                                Ok(body) => Err(format!("unexpected body {body:?}")),
                                Err(e) => Err(format!("body: {e}")),
                            },
                            Ok(resp) => Err(format!("status {}", resp.status())),
                            Err(e) => Err(format!("request: {e}")),
                        };
                        match outcome {
                            Ok(()) => served.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures.lock().unwrap().push(e);
                                0
                            }
                        };
                    }
                })
            })
            .collect();
        Load { stop, served, failures, tasks }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (self.served.load(Ordering::Relaxed), self.failures.lock().unwrap().clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_swaps_and_a_rollback_under_load_fail_no_request() {
    let state = tempfile::tempdir().unwrap();
    let bazaar = start(state.path());
    assert_eq!(hello(&bazaar).await, V1);
    let load = Load::start(&bazaar, 4);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // v2, v1, v2: each answer after a swap comes from the new build.
    for (file, expected) in [("hello_v2", V2), ("hello", V1), ("hello_v2", V2)] {
        let before = load.served();
        let started = Instant::now();
        let (status, report) = swap(&bazaar, "hello", &wasm(file), "?smoke_path=/hello").await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["smoke_status"], 200, "{report}");
        assert_eq!(hello(&bazaar).await, expected, "after swapping in {file}");
        eprintln!(
            "swap to {file}: {took:?} end to end (compile {} ms, switch {} µs), {} requests served meanwhile",
            report["compile_ms"],
            report["switch_us"],
            load.served() - before
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, report) = admin_post(&bazaar, "/admin/components/hello/rollback", Vec::new()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(hello(&bazaar).await, V1, "rollback returns to the build before the last swap");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (served, failures) = load.finish().await;
    assert!(failures.is_empty(), "{} of {} requests failed: {:?}", failures.len(), served, &failures[..failures.len().min(5)]);
    assert!(served > 100, "the load loop ran: {served} requests");
    eprintln!("{served} requests under load, none failed");

    // The listing shows the version serving and the one before it.
    let list: Value = client()
        .get(bazaar.admin_url("/admin/components"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = list["components"].as_array().unwrap().iter().find(|c| c["id"] == "hello").unwrap().clone();
    assert_eq!(entry["version"], sha256(&wasm("hello")), "{entry}");
    assert_eq!(entry["previous_version"], sha256(&wasm("hello_v2")), "{entry}");
}

fn sha256(file: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(file).unwrap()))
}

#[tokio::test]
async fn broken_builds_are_refused_and_the_old_version_keeps_serving() {
    let state = tempfile::tempdir().unwrap();
    let bazaar = start(state.path());

    let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let (status, answer) = admin_post(&bazaar, "/admin/components/hello/swap", random).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("not a valid WebAssembly component") && error.contains("keeps serving"), "{error}");

    // A valid component, but a Redis handler: the HTTP trigger could not call it.
    let (status, answer) = swap(&bazaar, "hello", &wasm("subscriber"), "").await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("does not export wasi:http/incoming-handler"), "{error}");

    // It compiles and links, but traps on its smoke request.
    let (status, answer) = swap(&bazaar, "hello", &wasm("probe"), "?smoke_path=/panic").await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("smoke request GET /panic"), "{error}");

    let (status, answer) = swap(&bazaar, "nosuch", &wasm("hello"), "").await;
    assert_eq!(status, 404, "{answer}");

    assert_eq!(hello(&bazaar).await, V1, "the old version still serves");
    // Nothing was swapped, so there is nothing to roll back to.
    let (status, answer) = admin_post(&bazaar, "/admin/components/hello/rollback", Vec::new()).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no version to roll back to"), "{answer}");
}

#[tokio::test]
async fn bazaar_swap_uses_the_token_from_the_state_directory() {
    require_components(&["hello", "hello_v2", "probe"]);
    let state = tempfile::tempdir().unwrap();
    let bazaar = Bazaar::start(&app("examples"), Up::default().state_dir(state.path()));
    let swap = |args: Vec<String>| {
        let mut cmd = bazaar_command();
        cmd.arg("swap").args(args).arg("--admin-url").arg(&bazaar.admin).arg("--state-dir").arg(state.path());
        cmd.env_remove("BAZAAR_ADMIN_TOKEN");
        cmd.output().unwrap()
    };
    let out = swap(vec!["hello".into(), wasm("hello_v2").display().to_string(), "--smoke-path".into(), "/hello".into()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["version"], sha256(&wasm("hello_v2")));
    assert_eq!(hello(&bazaar).await, V2);

    let out = swap(vec!["--rollback".into(), "hello".into()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hello(&bazaar).await, V1);

    let out = swap(vec!["hello".into(), wasm("subscriber").display().to_string()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("swap refused") && stderr.contains("wasi:http"), "{stderr}");
}

#[tokio::test]
async fn up_watch_swaps_a_rebuilt_wasm() {
    require_components(&["hello", "hello_v2"]);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("hello.wasm");
    std::fs::copy(wasm("hello"), &source).unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"watched\"\n[[trigger.http]]\nroute = \"/hello\"\ncomponent = \"hello\"\n[component.hello]\nsource = \"hello.wasm\"\n",
    )
    .unwrap();
    let bazaar = Bazaar::start(&manifest, Up::default().arg("--watch"));
    assert_eq!(hello(&bazaar).await, V1);

    // A build writes its output in pieces: the host must wait for the last.
    let v2 = std::fs::read(wasm("hello_v2")).unwrap();
    {
        use std::io::Write;
        let mut out = std::fs::File::create(&source).unwrap();
        for chunk in v2.chunks(v2.len() / 4 + 1) {
            out.write_all(chunk).unwrap();
            out.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let started = Instant::now();
    while hello(&bazaar).await != V2 {
        assert!(started.elapsed() < Duration::from_secs(30), "not swapped:\n{}", bazaar.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = bazaar.logs();
    assert!(!logs.contains("swap refused"), "a half-written build was tried:\n{logs}");
}

#[tokio::test]
async fn bazaar_watch_rebuilds_on_a_source_change_and_swaps() {
    require_components(&["hello", "hello_v2"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::copy(wasm("hello"), dir.path().join("out.wasm")).unwrap();
    // The "build" copies v2 into place: what matters is when it runs.
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"rebuilt\"\n[[trigger.http]]\nroute = \"/hello\"\ncomponent = \"hello\"\n\
             [component.hello]\nsource = \"out.wasm\"\n[component.hello.build]\ncommand = \"cp {} out.wasm\"\nwatch = [\"src/*.txt\"]\n",
            wasm("hello_v2").display()
        ),
    )
    .unwrap();
    let bazaar = Bazaar::start(&manifest, Up::default());
    assert_eq!(hello(&bazaar).await, V1);
    let mut watch = bazaar_command()
        .arg("watch")
        .arg("--from")
        .arg(&manifest)
        .arg("--admin-url")
        .arg(&bazaar.admin)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    std::fs::write(dir.path().join("src/lib.txt"), "changed").unwrap();
    let started = Instant::now();
    while hello(&bazaar).await != V2 {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = watch.kill();
            panic!("not rebuilt and swapped:\n{}", bazaar.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = watch.kill();
    let _ = watch.wait();
}
