//! Manifest tests: each accepted form, and each error naming its field.
use std::path::{Path, PathBuf};

use super::*;

const FILE: &str = "/apps/shop/spin.toml";

/// A valid manifest with `extra` appended.
fn with(extra: &str) -> String {
    format!(
        r#"
spin_manifest_version = 2

[application]
name = "shop"

[[trigger.http]]
route = "/..."
component = "web"

[component.web]
source = "web.wasm"
{extra}"#
    )
}

fn ok(text: &str) -> Manifest {
    parse(text, Path::new(FILE)).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text, Path::new(FILE)) {
        Ok(m) => panic!("expected an error, got {m:#?}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts the error names the file and contains each of `needles`.
fn assert_err(text: &str, needles: &[&str]) {
    let message = err(text);
    assert!(message.starts_with(FILE), "does not name the file: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{needle:?} not in: {message}");
    }
}

#[test]
fn minimal_manifest() {
    let m = ok(&with(""));
    assert_eq!(m.file, PathBuf::from(FILE));
    assert_eq!(m.dir, PathBuf::from("/apps/shop"));
    assert_eq!(
        m.application,
        Application {
            name: "shop".into(),
            version: None,
            description: None,
            authors: vec![],
            http_base: "/".into(),
            redis_address: None,
        }
    );
    assert_eq!(
        m.http_triggers,
        vec![HttpTrigger { route: HttpRoute::Route("/...".into()), component: "web".into(), executor: None }]
    );
    assert!(m.redis_triggers.is_empty() && m.variables.is_empty());
    let web = &m.components["web"];
    assert_eq!(web.id, "web");
    assert_eq!(web.source, PathBuf::from("/apps/shop/web.wasm"));
    assert!(web.files.is_empty() && web.build.is_none() && web.allowed_outbound_hosts.is_empty());
}

#[test]
fn relative_manifest_path_is_made_absolute() {
    let m = parse(&with(""), Path::new("spin.toml")).unwrap();
    assert!(m.file.is_absolute() && m.file.ends_with("spin.toml"));
    assert_eq!(m.dir, m.file.parent().unwrap());
    assert!(m.components["web"].source.starts_with(&m.dir));
}

#[test]
fn full_manifest() {
    let m = ok(r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "1.2.0"
description = "A shop"
authors = ["Ada <ada@example.com>"]

[application.trigger.http]
base = "/shop"

[application.trigger.redis]
address = "redis://localhost:6379"

[application.tool.something]
anything = true

[variables]
api_host = { default = "api.example.com" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/cart/..."
component = "cart"
executor = { type = "spin" }

[[trigger.http]]
route = { private = true }
component = "backend"

[[trigger.http]]
route = "/legacy"
component = "cart"
executor = { type = "wagi", argv = "x ${ARGS}" }

[[trigger.redis]]
channel = "orders"
component = "backend"

[[trigger.redis]]
channel = "audit"
component = "backend"
address = "redis://audit:6379"

[component.cart]
source = "cart/target/cart.wasm"
description = "The cart"
allowed_outbound_hosts = ["https://{{ api_host }}", "http://backend.spin.internal"]
key_value_stores = ["default", "sessions"]
sqlite_databases = ["orders_db"]
environment = { RUST_LOG = "info" }
files = ["static/**/*", { source = "assets", destination = "/www" }]
exclude_files = ["static/secret/**"]
variables = { api_url = "https://{{ api_host }}/v1", token = "{{api_key}}", plain = "x" }

[component.cart.build]
command = "cargo build --release"
workdir = "cart"
watch = ["src/**/*.rs"]

[component.cart.tool.lint]
level = "strict"

[component.backend]
source = "backend.wasm"

[component.backend.build]
command = ["make", "make install"]
"#);
    let app = &m.application;
    assert_eq!(app.version.as_deref(), Some("1.2.0"));
    assert_eq!(app.description.as_deref(), Some("A shop"));
    assert_eq!(app.authors, vec!["Ada <ada@example.com>"]);
    assert_eq!(app.http_base, "/shop");
    assert_eq!(app.redis_address.as_deref(), Some("redis://localhost:6379"));

    assert_eq!(
        m.variables["api_host"],
        VariableDecl { default: Some("api.example.com".into()), required: false, secret: false }
    );
    assert_eq!(m.variables["api_key"], VariableDecl { default: None, required: true, secret: true });

    assert_eq!(m.http_triggers.len(), 3);
    assert_eq!(m.http_triggers[0].executor, Some(HttpExecutor::Spin));
    assert_eq!(m.http_triggers[1].route, HttpRoute::Private);
    assert_eq!(
        m.http_triggers[2].executor,
        Some(HttpExecutor::Wagi { entrypoint: "_start".into(), argv: "x ${ARGS}".into() })
    );
    assert_eq!(
        m.redis_triggers,
        vec![
            RedisTrigger {
                channel: "orders".into(),
                component: "backend".into(),
                address: "redis://localhost:6379".into()
            },
            RedisTrigger { channel: "audit".into(), component: "backend".into(), address: "redis://audit:6379".into() },
        ]
    );

    let cart = &m.components["cart"];
    assert_eq!(cart.source, PathBuf::from("/apps/shop/cart/target/cart.wasm"));
    assert_eq!(cart.description.as_deref(), Some("The cart"));
    assert_eq!(cart.allowed_outbound_hosts, vec!["https://{{ api_host }}", "http://backend.spin.internal"]);
    assert_eq!(cart.key_value_stores, vec!["default", "sessions"]);
    assert_eq!(cart.sqlite_databases, vec!["orders_db"]);
    assert_eq!(cart.environment["RUST_LOG"], "info");
    assert_eq!(
        cart.files,
        vec![
            FileMount { source: "/apps/shop/static".into(), destination: "/static".into() },
            FileMount { source: "/apps/shop/assets".into(), destination: "/www".into() },
        ]
    );
    assert_eq!(cart.exclude_files, vec!["static/secret/**"]);
    assert_eq!(cart.variables["api_url"], "https://{{ api_host }}/v1");
    assert_eq!(
        cart.build,
        Some(ComponentBuild {
            commands: vec!["cargo build --release".into()],
            workdir: Some("/apps/shop/cart".into()),
            watch: vec!["src/**/*.rs".into()],
        })
    );
    assert_eq!(m.components["backend"].build.as_ref().unwrap().commands, vec!["make", "make install"]);
}

#[test]
fn file_mount_strings() {
    let m = ok(&with(r#"files = ["static", "./public/**", "**/*", "index.html"]"#));
    let mounts: Vec<(PathBuf, &str)> =
        m.components["web"].files.iter().map(|f| (f.source.clone(), f.destination.as_str())).collect();
    assert_eq!(
        mounts,
        vec![
            ("/apps/shop/static".into(), "/static"),
            ("/apps/shop/public".into(), "/public"),
            ("/apps/shop/".into(), "/"),
            ("/apps/shop/index.html".into(), "/index.html"),
        ]
    );
}

#[test]
fn file_mount_errors() {
    assert_err(&with(r#"files = ["static/*.css"]"#), &["component.web.files", "static/*.css", "whole directories"]);
    assert_err(&with(r#"files = [{ source = "a" }]"#), &["component.web.files", "destination"]);
    assert_err(&with(r#"files = [3]"#), &["component.web.files"]);
}

#[test]
fn inline_components_get_spins_ids() {
    let m = ok(r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/a"
component = { source = "a.wasm", allowed_outbound_hosts = ["https://a.test"] }
[[trigger.http]]
id = "named"
route = "/b"
component = { source = "b.wasm" }
[[trigger.http]]
id = "Bad_Id"
route = "/c"
component = { source = "c.wasm" }
[[trigger.redis]]
channel = "ch"
address = "redis://r"
component = { source = "r.wasm" }
"#);
    let ids: Vec<&str> = m.http_triggers.iter().map(|t| t.component.as_str()).collect();
    assert_eq!(ids, vec!["http-trigger1-component", "named-component", "inline-component1"]);
    assert_eq!(m.redis_triggers[0].component, "redis-trigger1-component");
    let a = &m.components["http-trigger1-component"];
    assert_eq!(a.id, "http-trigger1-component");
    assert_eq!(a.source, PathBuf::from("/apps/shop/a.wasm"));
    assert_eq!(a.allowed_outbound_hosts, vec!["https://a.test"]);
    assert_eq!(m.components["inline-component1"].source, PathBuf::from("/apps/shop/c.wasm"));
}

#[test]
fn inline_ids_skip_taken_ids() {
    let m = ok(r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
id = "http-trigger1"
route = "/a"
component = "http-trigger2-component"
[[trigger.http]]
route = "/b"
component = { source = "b.wasm" }
[component.http-trigger2-component]
source = "taken.wasm"
[component.inline-component1]
source = "taken.wasm"
"#);
    // The second trigger is http-trigger2 (1 is taken); its natural
    // component id is taken too, and so is inline-component1.
    assert_eq!(m.http_triggers[1].component, "inline-component2");
    assert_eq!(m.components["inline-component2"].source, PathBuf::from("/apps/shop/b.wasm"));
}

#[test]
fn references_may_name_inline_components() {
    let m = ok(r#"
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/a"
component = { source = "a.wasm" }
[[trigger.http]]
route = "/b"
component = "http-trigger1-component"
"#);
    assert_eq!(m.http_triggers[1].component, "http-trigger1-component");
}

#[test]
fn inline_component_errors_name_the_trigger() {
    let text = with(
        r#"
[[trigger.http]]
route = "/x"
component = { sourc = "x.wasm" }
"#,
    );
    assert_err(&text, &["[[trigger.http]] #2 component", "unknown field `sourc`"]);
    let text = with(
        r#"
[[trigger.http]]
route = "/x"
component = { source = "x.wasm", variables = { a = "{{ nope }}" } }
"#,
    );
    assert_err(&text, &["[[trigger.http]] #2 component.variables.a", "\"nope\""]);
}

#[test]
fn malformed_toml_is_located() {
    let message = err("spin_manifest_version = 2\n[application]\nname = \n");
    assert!(message.starts_with(&format!("{FILE}:3:")), "{message}");
    assert!(message.contains("invalid TOML: "), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn version_must_be_2() {
    assert_err(
        &with("").replace("spin_manifest_version = 2", "spin_manifest_version = 1"),
        &["spin_manifest_version: must be 2 (found 1); bazaar reads Spin manifest version 2"],
    );
    assert_err("spin_manifest_version = \"1\"\nname = \"v1\"\n", &["spin_manifest_version: must be 2 (found 1)"]);
    assert_err("spin_version = \"1\"\nname = \"v1\"\n[[component]]\nid = \"x\"\n", &["must be 2 (found 1)"]);
    assert_err(
        &with("").replace("spin_manifest_version = 2", ""),
        &["spin_manifest_version: is missing; add `spin_manifest_version = 2`"],
    );
}

#[test]
fn unknown_fields_are_located_and_named() {
    for (text, field) in [
        (with("sourc = \"x\""), "`sourc`"),
        (with("").replace("name = \"shop\"", "name = \"shop\"\ntitle = \"x\""), "`title`"),
        (with("[component.web.build]\ncommand = \"x\"\ndir = \"y\""), "`dir`"),
        (with("[variables]\nx = { default = \"1\", secrett = true }"), "`secrett`"),
        (with("[[trigger.http]]\nroute = \"/x\"\ncomponent = \"web\"\nmethod = \"GET\""), "`method`"),
        (with("[application.trigger.http]\nbase = \"/\"\nprefix = \"/x\""), "`prefix`"),
    ] {
        let message = err(&text);
        assert!(message.starts_with(&format!("{FILE}:")), "{message}");
        assert!(message.contains(&format!("unknown field {field}")), "{message}");
        assert!(message.contains("remove it or fix its spelling"), "{message}");
    }
}

#[test]
fn unsupported_trigger_types() {
    assert_err(
        &with("[[trigger.cron]]\ncron_expression = \"* * * * *\"\ncomponent = \"web\""),
        &["trigger.cron: bazaar supports the http and redis triggers"],
    );
    assert_err(&with("[application.trigger.sqs]\nregion = \"x\""), &["application.trigger.sqs: bazaar supports"]);
}

#[test]
fn app_without_triggers() {
    for text in ["", "[trigger]\n", "trigger = {}\n"] {
        assert_err(
            &format!("spin_manifest_version = 2\n[application]\nname = \"x\"\n{text}"),
            &["trigger: the app has no triggers; add a [[trigger.http]]"],
        );
    }
}

#[test]
fn trigger_naming_a_missing_component() {
    let text = with(
        "[[trigger.http]]\nroute = \"/a\"\ncomponent = \"web\"\n[[trigger.http]]\nroute = \"/b\"\ncomponent = \"cart\"",
    );
    assert_err(
        &text,
        &["[[trigger.http]] #3 component: \"cart\" names no component; define [component.cart] or fix the id"],
    );
    let text = with("[[trigger.redis]]\nchannel = \"c\"\naddress = \"redis://r\"\ncomponent = \"nope\"");
    assert_err(&text, &["[[trigger.redis]] #1 component", "[component.nope]"]);
}

#[test]
fn trigger_without_component_or_route() {
    assert_err(&with("[[trigger.http]]\nroute = \"/a\""), &["[[trigger.http]] #2: has no component"]);
    assert_err(&with("[[trigger.http]]\ncomponent = \"web\""), &["[[trigger.http]] #2: has no route"]);
    assert_err(&with("[[trigger.http]]\nroute = \"/a\"\ncomponent = 7"), &["[[trigger.http]] #2 component: 7 must be"]);
}

#[test]
fn route_forms() {
    assert_err(
        &with("[[trigger.http]]\nroute = { private = false }\ncomponent = \"web\""),
        &["#2 route", "{ private = true }"],
    );
    assert_err(&with("[[trigger.http]]\nroute = 3\ncomponent = \"web\""), &["#2 route"]);
    assert_err(
        &with("[[trigger.http]]\nroute = \"/a/.../b\"\ncomponent = \"web\""),
        &["#2 route", "\"/a/.../b\" is not valid"],
    );
}

#[test]
fn duplicate_routes_name_both_triggers() {
    let text = with(
        r#"
[[trigger.http]]
route = { private = true }
component = "web"
[[trigger.http]]
route = "/api/..."
component = "web"
[[trigger.http]]
route = "/api/.../"
component = "web"
"#,
    );
    assert_err(
        &text,
        &[
            "[[trigger.http]] #4 route: \"/api/.../\" is the same route as #3 (\"/api/...\"); each route may be used once",
        ],
    );
}

#[test]
fn reserved_routes_are_accepted_as_spin_does() {
    ok(&with("[[trigger.http]]\nroute = \"/.well-known/spin/x\"\ncomponent = \"web\""));
}

#[test]
fn http_base_must_be_a_path() {
    for base in ["shop", "/shop/...", "/:tenant"] {
        assert_err(
            &with(&format!("[application.trigger.http]\nbase = \"{base}\"")),
            &["application.trigger.http.base"],
        );
    }
}

#[test]
fn redis_trigger_needs_an_address() {
    assert_err(
        &with("[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"web\""),
        &["[[trigger.redis]] #1 address: no Redis address"],
    );
}

#[test]
fn unknown_executor_is_an_error() {
    let message = err(&with("[[trigger.http]]\nroute = \"/a\"\ncomponent = \"web\"\nexecutor = { type = \"cgi\" }"));
    assert!(message.contains("cgi"), "{message}");
}

#[test]
fn invalid_component_ids() {
    assert_err(
        &with("[component.My_Cart]\nsource = \"x.wasm\""),
        &["component.My_Cart: invalid component id", "kebab-case"],
    );
    assert_err(&with("[component.2fa]\nsource = \"x.wasm\""), &["component.2fa: invalid component id"]);
}

#[test]
fn invalid_variable_names() {
    assert_err(&with("[variables]\nApiKey = { default = \"x\" }"), &["variables.ApiKey: invalid name", "snake_case"]);
    assert_err(&with("[component.web.variables]\napi-key = \"x\""), &["component.web.variables.api-key: invalid name"]);
}

#[test]
fn variable_must_be_required_or_have_a_default() {
    assert_err(
        &with("[variables]\nkey = { required = true, default = \"x\" }"),
        &["variables.key: is `required` and has a `default`", "remove one"],
    );
    assert_err(
        &with("[variables]\nkey = { secret = true }"),
        &["variables.key: needs `required = true` or a `default"],
    );
}

#[test]
fn component_variable_templates_name_declared_variables() {
    let text = with(
        "[component.web.variables]\nurl = \"https://{{ api_hots }}/\"\n[variables]\napi_host = { default = \"x\" }",
    );
    assert_err(&text, &["component.web.variables.url", "\"api_hots\"", "declare it in [variables]"]);
    assert_err(&with("[component.web.variables]\nurl = \"{{ open\""), &["component.web.variables.url", "not closed"]);
}

#[test]
fn remote_and_registry_sources_are_rejected() {
    let remote = with("").replace(
        "source = \"web.wasm\"",
        "source = { url = \"https://example.com/web.wasm\", digest = \"sha256:abc\" }",
    );
    assert_err(&remote, &["component.web.source", "local Wasm files only", "https://example.com/web.wasm"]);
    let registry = with("")
        .replace("source = \"web.wasm\"", "source = { registry = \"r.io\", package = \"a:b\", version = \"1.0.0\" }");
    assert_err(&registry, &["component.web.source", "registry"]);
    assert_err(
        &with("").replace("source = \"web.wasm\"", "source = 1"),
        &["component.web.source", "path of a Wasm file"],
    );
}

#[test]
fn dependencies_are_not_supported() {
    assert_err(
        &with("[component.web.dependencies]\n\"a:b/c\" = \"1.0.0\""),
        &["component.web.dependencies", "not supported by bazaar"],
    );
    assert_err(&with("dependencies_inherit_configuration = true"), &["component.web.dependencies", "not supported"]);
}

#[test]
fn unsupported_component_fields() {
    assert_err(&with("ai_models = [\"llama2-chat\"]"), &["component.web.ai_models"]);
    assert_err(
        &with("allowed_http_hosts = [\"example.com\"]"),
        &["component.web.allowed_http_hosts", "allowed_outbound_hosts = [\"https://example.com\"]"],
    );
}

#[test]
fn store_names_are_checked() {
    assert_err(&with("key_value_stores = [\"my store\"]"), &["component.web.key_value_stores", "\"my store\""]);
    assert_err(&with("sqlite_databases = [\"-x\"]"), &["component.web.sqlite_databases"]);
}

#[test]
fn build_command_must_be_strings() {
    assert_err(&with("[component.web.build]\ncommand = 3"), &["component.web.build.command"]);
    assert_err(&with("[component.web.build]\ncommand = [\"a\", 3]"), &["component.web.build.command"]);
}

#[test]
fn load_reads_the_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("bazaar-manifest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spin.toml");
    std::fs::write(&file, with("")).unwrap();
    let m = load(&file).unwrap();
    assert_eq!(m.dir, dir);
    assert_eq!(m.components["web"].source, dir.join("web.wasm"));

    let missing = dir.join("nope.toml");
    let message = load(&missing).unwrap_err().to_string();
    assert!(message.starts_with(&missing.display().to_string()), "{message}");
    assert!(message.contains("cannot read the manifest"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}
