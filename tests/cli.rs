//! End to end: the `bazaar` command line — `build`, start-up errors a user
//! can act on, and graceful shutdown.
use crate::support;

use std::time::Duration;

use support::{Bazaar, Up, app, bazaar_command, client, require_components};

fn write_app(dir: &std::path::Path, manifest: &str) -> std::path::PathBuf {
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

fn up_fails(manifest: &std::path::Path, args: &[&str]) -> String {
    Bazaar::try_start(manifest, Up { args: args.iter().map(|s| s.to_string()).collect(), ..Up::default() })
        .err()
        .expect("bazaar should refuse to start")
}

#[test]
fn malformed_toml_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_app(dir.path(), "spin_manifest_version = 2\n[application\nname = \"x\"\n");
    let out = up_fails(&manifest, &[]);
    assert!(out.contains("spin.toml:2"), "{out}");
}

#[test]
fn unknown_component_in_a_trigger_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_app(
        dir.path(),
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"cart\"\n",
    );
    let out = up_fails(&manifest, &[]);
    assert!(out.contains("spin.toml") && out.contains("\"cart\"") && out.contains("[component.cart]"), "{out}");
}

#[test]
fn missing_wasm_suggests_bazaar_build() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_app(
        dir.path(),
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"web\"\n\
         [component.web]\nsource = \"target/web.wasm\"\n[component.web.build]\ncommand = \"true\"\n",
    );
    let out = up_fails(&manifest, &[]);
    assert!(out.contains("[component.web]") && out.contains("target/web.wasm") && out.contains("bazaar build"), "{out}");
}

#[test]
fn a_memory_limit_below_what_a_component_starts_with_names_the_setting() {
    require_components(&["hello", "probe"]);
    // The components start with 4 MiB of linear memory (.cargo/config.toml).
    let out = up_fails(&app("examples"), &["--max-instance-memory-mb", "2"]);
    assert!(out.contains(".wasm") && out.contains("--max-instance-memory-mb"), "{out}");
}

#[test]
fn a_required_variable_without_a_value_stops_start_up() {
    require_components(&["probe"]);
    let out = up_fails(&app("capabilities"), &[]);
    assert!(out.contains("upstream_port") && out.contains("SPIN_VARIABLE_UPSTREAM_PORT"), "{out}");
}

#[test]
fn an_undefined_store_in_a_grant_stops_start_up() {
    require_components(&["probe"]);
    // Without the runtime config, the `extra` store is not defined anywhere.
    let out = Bazaar::try_start(&app("capabilities"), Up::default().env("SPIN_VARIABLE_UPSTREAM_PORT", "1"))
        .err()
        .expect("bazaar should refuse to start");
    assert!(out.contains("extra") && out.contains("runtime config"), "{out}");
}

#[test]
fn build_runs_each_components_command_in_its_workdir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let manifest = write_app(
        dir.path(),
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\n\
         [component.a]\nsource = \"a.wasm\"\n[component.a.build]\ncommand = \"echo built > marker\"\nworkdir = \"sub\"\n\
         [component.b]\nsource = \"b.wasm\"\n[component.b.build]\ncommand = \"exit 3\"\n",
    );
    let out = bazaar_command().args(["build", "--from"]).arg(&manifest).args(["-c", "a"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("sub/marker")).unwrap(), "built\n");

    let out = bazaar_command().args(["build", "--from"]).arg(&manifest).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[component.b]") && err.contains("failed"), "{err}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    require_components(&["probe"]);
    let b = Bazaar::start(&app("routes"), Up::default());
    let slow = tokio::spawn({
        let url = b.url("/static/sleep?ms=1500");
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port = b.port;
    let status = tokio::task::spawn_blocking(move || b.terminate()).await.unwrap();
    let (code, body) = slow.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1500"), "{body}");
    assert!(status.success(), "{status}");
    // And the listener is closed.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn the_compile_cache_makes_a_restart_skip_compilation() {
    require_components(&["hello"]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest = write_app(
        dir.path(),
        &format!(
            "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"hello\"\n\
             [component.hello]\nsource = \"{}\"\n",
            support::root().join("target/wasm32-wasip2/release/hello.wasm").display()
        ),
    );
    let up = || Up::default().arg("--cache-dir").arg(cache.to_str().unwrap()).state_dir(&dir.path().join("state"));
    let first = Bazaar::start(&manifest, up());
    assert!(first.wait_for_log("compiled in"), "{}", first.logs());
    drop(first);
    let entries: Vec<_> = std::fs::read_dir(cache.join("components")).unwrap().collect();
    assert_eq!(entries.len(), 1, "one compiled artefact in the cache");

    let second = Bazaar::start(&manifest, up());
    assert!(second.wait_for_log("loaded from the compile cache"), "{}", second.logs());
}
