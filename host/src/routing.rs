//! Spin's HTTP route matching: which component a request path goes to, and
//! the parts of the match Spin hands the component in `spin-*` headers.
//!
//! This mirrors Spin (`crates/http/src/routes.rs`, which delegates to the
//! `routefinder` 0.5 crate) so that an app routes the same under bazaar:
//! - a route is the application base joined with the trigger route, with one
//!   trailing `/` dropped from each (`/shop` + `/cart/` is `/shop/cart`);
//! - `/...` (or `/*`) at the end is a trailing wildcard: `/users/...` matches
//!   `/users`, `/users/1` and `/users/1/edit`, and `/...` matches everything;
//! - a `:name` segment matches exactly one non-empty path segment;
//! - the request path is compared as received, percent-encoding and all,
//!   ignoring leading and trailing slashes (`/cart/` matches `/cart`);
//! - when several routes match, the most specific wins, compared segment by
//!   segment from the left: a literal beats a `:name`, which beats the
//!   trailing wildcard; if one route is a prefix of the other, the shorter
//!   wins. So an exact route beats a wildcard on the same prefix, and among
//!   wildcards the longest prefix wins.
//!
//! Where bazaar is stricter than Spin: two routes that match exactly the same
//! paths (`/a` and `/a/`, or `/u/:id` and `/u/:name`) are an error rather
//! than a warning with one route silently unreachable, and `:name` segments
//! must be whole segments with a plain name.
//!
//! Paths under [`WELL_KNOWN_PREFIX`] belong to the host (health and info);
//! Spin serves them before routing, so app routes there are never reached.
//! Like Spin, the router accepts such routes and reports them through
//! [`Router::reserved_routes`] so the host can warn.
use std::cmp::Ordering;

/// The path prefix Spin reserves for the host's own endpoints.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// The routes of an app's HTTP triggers, most specific first.
#[derive(Clone, Debug)]
pub struct Router {
    routes: Vec<Route>,
}

/// Why a set of routes cannot be routed. `index` and `first_index` are
/// positions in the slice given to [`Router::build`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route {route:?} of component {component:?} is not valid: {reason}")]
    Invalid { index: usize, route: String, component: String, reason: String },
    #[error(
        "route {route:?} of component {component:?} is the same route as {first_route:?} of \
         component {first_component:?}; each route may be used once"
    )]
    Duplicate {
        index: usize,
        route: String,
        component: String,
        first_index: usize,
        first_route: String,
        first_component: String,
    },
}

/// A request path matched to a component, with the values Spin passes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub component_id: &'a str,
    /// The route as written in the manifest (`/api/...`):
    /// `spin-raw-component-route`.
    pub raw_route: &'a str,
    /// The base joined with the route (`/shop/api/...`; `""` for the route
    /// `/` under the base `/`, as in Spin): `spin-matched-route`.
    pub matched_route: String,
    /// The route as written without a trailing `/...`: `spin-component-route`.
    pub component_route: String,
    /// The rest of the path after a wildcard's prefix (`/rest`, with a
    /// trailing `/` if the request had one); `""` for other routes:
    /// `spin-path-info`.
    pub path_info: String,
    /// `:name` captures in route order, names as written in the route. Spin's
    /// header for each is `spin-path-match-` followed by the name in lower
    /// case with `_` turned into `-`.
    pub named: Vec<(String, String)>,
}

impl Router {
    /// Builds a router from `(route as written, component id)` pairs under
    /// the application `base` (`/` when the manifest sets none). Private
    /// routes are not routes and must not be passed.
    pub fn build(base: &str, routes: &[(String, String)]) -> Result<Router, RouteError> {
        let mut built: Vec<Route> = Vec::with_capacity(routes.len());
        for (index, (raw, component)) in routes.iter().enumerate() {
            let matched = join_base(base, raw);
            let pattern = Pattern::parse(&matched).map_err(|reason| RouteError::Invalid {
                index,
                route: raw.clone(),
                component: component.clone(),
                reason,
            })?;
            if let Some(first) = built.iter().find(|r| r.pattern.same_paths_as(&pattern)) {
                return Err(RouteError::Duplicate {
                    index,
                    route: raw.clone(),
                    component: component.clone(),
                    first_index: first.index,
                    first_route: first.raw.clone(),
                    first_component: first.component_id.clone(),
                });
            }
            built.push(Route { index, component_id: component.clone(), raw: raw.clone(), matched, pattern });
        }
        built.sort_by(|a, b| a.pattern.precedence(&b.pattern));
        Ok(Router { routes: built })
    }

    /// The best route for a request path (the URI path, without the query).
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let trimmed = path.trim_start_matches('/').trim_end_matches('/');
        let segments: Vec<&str> = if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').collect() };
        self.routes.iter().find_map(|route| route.try_match(&segments, path.ends_with('/')))
    }

    /// Routes under [`WELL_KNOWN_PREFIX`], which requests never reach, as
    /// `(route as written, component id)`, in manifest order.
    pub fn reserved_routes(&self) -> Vec<(&str, &str)> {
        let mut reserved: Vec<&Route> =
            self.routes.iter().filter(|r| r.matched.starts_with(WELL_KNOWN_PREFIX)).collect();
        reserved.sort_by_key(|r| r.index);
        reserved.into_iter().map(|r| (r.raw.as_str(), r.component_id.as_str())).collect()
    }
}

impl<'a> RouteMatch<'a> {
    /// The match Spin uses for a request chained to a component by id
    /// (`http://<id>.spin.internal/path`): as if the component's route were
    /// `/...`, whatever its real route, so private components can be chained
    /// to and `path_info` is the whole path.
    pub fn synthetic(component_id: &'a str, path: &str) -> RouteMatch<'a> {
        RouteMatch {
            component_id,
            raw_route: "/...",
            matched_route: "/...".to_string(),
            component_route: String::new(),
            path_info: path.to_string(),
            named: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
struct Route {
    /// Position in the slice given to `build`.
    index: usize,
    component_id: String,
    raw: String,
    /// Base joined with `raw`: what Spin reports as the matched route.
    matched: String,
    pattern: Pattern,
}

impl Route {
    fn try_match(&self, path: &[&str], trailing_slash: bool) -> Option<RouteMatch<'_>> {
        let fixed = &self.pattern.segments;
        let fits = if self.pattern.wildcard { path.len() >= fixed.len() } else { path.len() == fixed.len() };
        if !fits {
            return None;
        }
        let mut named = Vec::new();
        for (segment, part) in fixed.iter().zip(path) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Param(name) if !part.is_empty() => named.push((name.clone(), part.to_string())),
                _ => return None,
            }
        }
        let path_info = if self.pattern.wildcard {
            // Spin keeps the request's trailing slash in the path info even
            // though matching ignores it.
            let rest = path[fixed.len()..].join("/");
            match (rest.is_empty(), trailing_slash) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            component_id: &self.component_id,
            raw_route: &self.raw,
            matched_route: self.matched.clone(),
            component_route: self.raw.strip_suffix("/...").unwrap_or(&self.raw).to_string(),
            path_info,
            named,
        })
    }
}

/// A parsed route: its fixed segments, then maybe a trailing wildcard.
#[derive(Clone, Debug)]
struct Pattern {
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

impl Pattern {
    fn parse(route: &str) -> Result<Pattern, String> {
        let (fixed, wildcard) = match route.strip_suffix("/...").or_else(|| route.strip_suffix("/*")) {
            Some(prefix) => (prefix, true),
            None => (route, false),
        };
        let mut segments = Vec::new();
        // Empty segments (`//`) are skipped, as routefinder does.
        for part in fixed.split('/').filter(|p| !p.is_empty()) {
            segments.push(match part {
                "..." | "*" => return Err(format!("{part:?} may only end a route, as \"/...\"")),
                _ if part.starts_with('*') => return Err(format!("{part:?}: a trailing wildcard is written \"/...\"")),
                _ => match part.strip_prefix(':') {
                    Some(name) => Segment::Param(param_name(name, &segments)?),
                    None => Segment::Literal(part.to_string()),
                },
            });
        }
        Ok(Pattern { segments, wildcard })
    }

    /// Whether both patterns match exactly the same paths.
    fn same_paths_as(&self, other: &Pattern) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|pair| match pair {
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Param(_), Segment::Param(_)) => true,
                _ => false,
            })
    }

    /// Orders the more specific pattern first (see the module docs). Only
    /// patterns that can match the same path need to compare meaningfully;
    /// this is a total order over all of them so it can be used to sort.
    fn precedence(&self, other: &Pattern) -> Ordering {
        self.specificity().cmp(&other.specificity())
    }

    /// One rank per segment, literal 0, `:name` 1, trailing wildcard 2:
    /// compared lexicographically, a lower rank at the first difference is
    /// more specific, and a proper prefix (the shorter route) comes first.
    fn specificity(&self) -> Vec<u8> {
        let ranks = self.segments.iter().map(|s| match s {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
        });
        ranks.chain(self.wildcard.then_some(2)).collect()
    }
}

fn param_name(name: &str, earlier: &[Segment]) -> Result<String, String> {
    if name.is_empty() {
        return Err("a \":\" segment needs a name, as \":id\"".to_string());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!(
            "\":{name}\": a parameter is a whole segment named with letters, digits, '_' and '-', as \":id\""
        ));
    }
    if earlier.iter().any(|s| matches!(s, Segment::Param(n) if n == name)) {
        return Err(format!("\":{name}\" is used twice; give each parameter its own name"));
    }
    Ok(name.to_string())
}

/// Spin's joining of base and route: the route gets a leading `/` if it has
/// none, and each loses one trailing `/`.
fn join_base(base: &str, route: &str) -> String {
    let route = if route.starts_with('/') { route.to_string() } else { format!("/{route}") };
    let strip = |s: &str| s.strip_suffix('/').unwrap_or(s).to_string();
    format!("{}{}", strip(base), strip(&route))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(base: &str, routes: &[(&str, &str)]) -> Router {
        try_router(base, routes).unwrap()
    }

    fn try_router(base: &str, routes: &[(&str, &str)]) -> Result<Router, RouteError> {
        let routes: Vec<(String, String)> = routes.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect();
        Router::build(base, &routes)
    }

    fn component<'a>(router: &'a Router, path: &str) -> Option<&'a str> {
        router.route(path).map(|m| m.component_id)
    }

    #[test]
    fn exact_route_matches_only_itself_ignoring_trailing_slash() {
        let r = router("/", &[("/foo/bar", "c")]);
        assert_eq!(component(&r, "/foo/bar"), Some("c"));
        assert_eq!(component(&r, "/foo/bar/"), Some("c"));
        assert_eq!(component(&r, "/foo"), None);
        assert_eq!(component(&r, "/foo/bar/baz"), None);
        assert_eq!(component(&r, "/foo/barbaz"), None);
        assert_eq!(component(&r, "/abc"), None);
    }

    #[test]
    fn route_written_with_trailing_slash_is_the_same_route() {
        let r = router("/", &[("/foo/", "c")]);
        assert_eq!(component(&r, "/foo"), Some("c"));
        assert_eq!(component(&r, "/foo/"), Some("c"));
    }

    #[test]
    fn route_without_leading_slash_is_absolutised() {
        let r = router("/", &[("foo", "c")]);
        let m = r.route("/foo").unwrap();
        assert_eq!(m.matched_route, "/foo");
        assert_eq!(m.raw_route, "foo");
    }

    #[test]
    fn root_route_matches_only_root() {
        let r = router("/", &[("/", "root")]);
        let m = r.route("/").unwrap();
        assert_eq!(m.component_id, "root");
        // Spin strips the trailing slash from base and route alike.
        assert_eq!(m.matched_route, "");
        assert_eq!(m.raw_route, "/");
        assert_eq!(m.component_route, "/");
        assert_eq!(m.path_info, "");
        assert_eq!(component(&r, "/x"), None);
    }

    #[test]
    fn root_wildcard_matches_everything() {
        let r = router("/", &[("/...", "all")]);
        for path in ["/", "/foo", "/foo/bar/", "/this/should/really/match/everything/"] {
            assert_eq!(component(&r, path), Some("all"), "{path}");
        }
        let m = r.route("/env/api").unwrap();
        assert_eq!(m.matched_route, "/...");
        assert_eq!(m.raw_route, "/...");
        assert_eq!(m.component_route, "");
        assert_eq!(m.path_info, "/env/api");
        assert_eq!(r.route("/").unwrap().path_info, "/");
    }

    #[test]
    fn wildcard_matches_its_prefix_and_below_only_on_segment_boundaries() {
        let r = router("/", &[("/foo/...", "c")]);
        assert_eq!(component(&r, "/foo"), Some("c"));
        assert_eq!(component(&r, "/foo/"), Some("c"));
        assert_eq!(component(&r, "/foo/bar/baz"), Some("c"));
        assert_eq!(component(&r, "/foobar"), None);
        assert_eq!(component(&r, "/"), None);
    }

    #[test]
    fn star_suffix_is_a_wildcard_too() {
        let r = router("/", &[("/foo/*", "c")]);
        let m = r.route("/foo/a/b").unwrap();
        assert_eq!(m.path_info, "/a/b");
        assert_eq!(m.component_route, "/foo/*");
    }

    #[test]
    fn path_info_keeps_spins_trailing_slash_rules() {
        let r = router("/", &[("/test/...", "c")]);
        assert_eq!(r.route("/test").unwrap().path_info, "");
        assert_eq!(r.route("/test/").unwrap().path_info, "/");
        assert_eq!(r.route("/test/hello").unwrap().path_info, "/hello");
        assert_eq!(r.route("/test/hello/").unwrap().path_info, "/hello/");
        assert_eq!(r.route("/test/a//b").unwrap().path_info, "/a//b");
    }

    #[test]
    fn match_reports_spin_header_values() {
        let r = router("/", &[("/foo/...", "c")]);
        let m = r.route("/foo/bar").unwrap();
        assert_eq!(
            m,
            RouteMatch {
                component_id: "c",
                raw_route: "/foo/...",
                matched_route: "/foo/...".into(),
                component_route: "/foo".into(),
                path_info: "/bar".into(),
                named: vec![],
            }
        );
    }

    #[test]
    fn exact_route_has_empty_path_info() {
        let r = router("/", &[("/foo", "c")]);
        assert_eq!(r.route("/foo").unwrap().path_info, "");
    }

    #[test]
    fn base_is_prefixed_to_every_route() {
        let r = router("/base", &[("/foo", "foo"), ("/foo/bar", "foobar"), ("/static/...", "static")]);
        assert_eq!(component(&r, "/base/foo"), Some("foo"));
        assert_eq!(component(&r, "/base/foo/"), Some("foo"));
        assert_eq!(component(&r, "/base/foo/bar"), Some("foobar"));
        assert_eq!(component(&r, "/foo"), None);
        let m = r.route("/base/static/images/abc.png").unwrap();
        assert_eq!(m.matched_route, "/base/static/...");
        assert_eq!(m.raw_route, "/static/...");
        assert_eq!(m.component_route, "/static");
        assert_eq!(m.path_info, "/images/abc.png");
    }

    #[test]
    fn base_with_trailing_slash_and_root_routes() {
        let r = router("/base/", &[("/", "root"), ("/...", "rest")]);
        let m = r.route("/base").unwrap();
        assert_eq!((m.component_id, m.matched_route.as_str()), ("root", "/base"));
        let m = r.route("/base/x").unwrap();
        assert_eq!((m.component_id, m.matched_route.as_str(), m.path_info.as_str()), ("rest", "/base/...", "/x"));
        assert_eq!(component(&r, "/other"), None);
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router("/", &[("/...", "wildcard"), ("/one", "one_exact")]);
        assert_eq!(component(&r, "/one"), Some("one_exact"));
        assert_eq!(component(&r, "/two"), Some("wildcard"));
    }

    #[test]
    fn exact_beats_wildcard_on_the_same_prefix() {
        let r = router("/", &[("/users/...", "manager"), ("/users", "list")]);
        assert_eq!(component(&r, "/users"), Some("list"));
        assert_eq!(component(&r, "/users/"), Some("list"));
        assert_eq!(component(&r, "/users/1"), Some("manager"));
    }

    #[test]
    fn root_exact_beats_root_wildcard() {
        let r = router("/", &[("/...", "all"), ("/", "home")]);
        assert_eq!(component(&r, "/"), Some("home"));
        assert_eq!(component(&r, "/x"), Some("all"));
    }

    #[test]
    fn longest_wildcard_prefix_wins_regardless_of_order() {
        let forward = [("/one/...", "one"), ("/one/two/...", "two"), ("/one/two/three/...", "three")];
        let mut backward = forward;
        backward.reverse();
        for routes in [forward, backward] {
            let r = router("/", &routes);
            assert_eq!(component(&r, "/one/two/three/four"), Some("three"));
            assert_eq!(component(&r, "/one/two/three"), Some("three"));
            assert_eq!(component(&r, "/one/two/x"), Some("two"));
            assert_eq!(component(&r, "/one/x"), Some("one"));
        }
    }

    #[test]
    fn docs_example_of_overlapping_routes() {
        // From Spin's "Resolving Overlapping Routes".
        let r = router("/", &[("/users/...", "user-manager"), ("/users/admin", "admin"), ("/...", "shop")]);
        assert_eq!(component(&r, "/users/1"), Some("user-manager"));
        assert_eq!(component(&r, "/users/admin"), Some("admin"));
        assert_eq!(component(&r, "/cart"), Some("shop"));
    }

    #[test]
    fn param_matches_exactly_one_non_empty_segment() {
        let r = router("/", &[("/users/:userid/edit", "c")]);
        let m = r.route("/users/alice/edit").unwrap();
        assert_eq!(m.named, vec![("userid".to_string(), "alice".to_string())]);
        assert_eq!(m.path_info, "");
        assert_eq!(m.component_route, "/users/:userid/edit");
        for path in ["/users", "/users/1", "/users/1/edit/cart", "/users//edit"] {
            assert_eq!(component(&r, path), None, "{path}");
        }
    }

    #[test]
    fn params_and_trailing_wildcard_together() {
        let r = router("/", &[("/foo/:userid/...", "c")]);
        let m = r.route("/foo/42/bar").unwrap();
        assert_eq!(m.named, vec![("userid".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "/bar");
        assert_eq!(m.matched_route, "/foo/:userid/...");
        assert_eq!(m.component_route, "/foo/:userid");
    }

    #[test]
    fn several_params_are_captured_in_route_order() {
        let r = router("/", &[("/:org/repos/:repo", "c")]);
        let m = r.route("/acme/repos/anvil").unwrap();
        assert_eq!(m.named, vec![("org".into(), "acme".into()), ("repo".into(), "anvil".into())]);
    }

    #[test]
    fn literal_segment_beats_param() {
        let r = router("/", &[("/users/:id", "by-id"), ("/users/me", "me")]);
        assert_eq!(component(&r, "/users/me"), Some("me"));
        assert_eq!(component(&r, "/users/42"), Some("by-id"));
    }

    #[test]
    fn leftmost_literal_decides_between_params() {
        let r = router("/", &[("/:a/b", "param-first"), ("/a/:b", "literal-first")]);
        assert_eq!(component(&r, "/a/b"), Some("literal-first"));
        assert_eq!(component(&r, "/x/b"), Some("param-first"));
    }

    #[test]
    fn param_beats_trailing_wildcard() {
        let r = router("/", &[("/users/...", "wildcard"), ("/users/:id", "param")]);
        assert_eq!(component(&r, "/users/42"), Some("param"));
        assert_eq!(component(&r, "/users/42/edit"), Some("wildcard"));
    }

    #[test]
    fn literal_wildcard_prefix_beats_param_route_segment_by_segment() {
        // Specificity is compared from the left as Spin's router does, so a
        // literal first segment wins even against a route with no wildcard.
        let r = router("/", &[("/:any", "param"), ("/foo/...", "foo")]);
        assert_eq!(component(&r, "/foo"), Some("foo"));
        assert_eq!(component(&r, "/bar"), Some("param"));
    }

    #[test]
    fn paths_are_matched_percent_encoded_as_received() {
        let r = router("/", &[("/caf%C3%A9", "cafe"), ("/users/:name", "user")]);
        assert_eq!(component(&r, "/caf%C3%A9"), Some("cafe"));
        assert_eq!(component(&r, "/café"), None);
        let m = r.route("/users/a%20b").unwrap();
        assert_eq!(m.named, vec![("name".to_string(), "a%20b".to_string())]);
        let files = router("/", &[("/files/...", "f")]);
        assert_eq!(files.route("/files/a%2Fb").unwrap().path_info, "/a%2Fb");
    }

    #[test]
    fn matching_is_case_sensitive() {
        let r = router("/", &[("/Cart", "c")]);
        assert_eq!(component(&r, "/cart"), None);
        assert_eq!(component(&r, "/Cart"), Some("c"));
    }

    #[test]
    fn repeated_slashes_in_a_route_collapse() {
        let r = router("/", &[("/a//b", "c")]);
        assert_eq!(component(&r, "/a/b"), Some("c"));
    }

    #[test]
    fn no_routes_match_nothing() {
        assert!(router("/", &[]).route("/").is_none());
    }

    #[test]
    fn duplicate_routes_name_both() {
        let err = try_router("/", &[("/", "home"), ("/foo", "first"), ("/foo/", "second")]).unwrap_err();
        assert_eq!(
            err,
            RouteError::Duplicate {
                index: 2,
                route: "/foo/".into(),
                component: "second".into(),
                first_index: 1,
                first_route: "/foo".into(),
                first_component: "first".into(),
            }
        );
        let message = err.to_string();
        assert!(message.contains("\"/foo/\"") && message.contains("\"/foo\""), "{message}");
        assert!(message.contains("second") && message.contains("first"), "{message}");
    }

    #[test]
    fn duplicate_wildcards_and_params_are_detected() {
        assert!(matches!(try_router("/", &[("/...", "a"), ("/*", "b")]), Err(RouteError::Duplicate { .. })));
        assert!(matches!(
            try_router("/", &[("/u/:id", "a"), ("/u/:name", "b")]),
            Err(RouteError::Duplicate { first_index: 0, index: 1, .. })
        ));
        // Same prefix, different kinds: not duplicates.
        try_router("/", &[("/u", "a"), ("/u/...", "b"), ("/u/:id", "c")]).unwrap();
    }

    #[test]
    fn invalid_routes_are_rejected_with_the_reason() {
        for (route, needle) in [
            ("/a/.../b", "may only end a route"),
            ("/a/*/b", "may only end a route"),
            ("/a/*rest", "trailing wildcard"),
            ("/a/:", "needs a name"),
            ("/a/:name.json", "whole segment"),
            ("/:id/x/:id", "used twice"),
        ] {
            let err = try_router("/", &[("/ok", "ok"), (route, "bad")]).unwrap_err();
            match &err {
                RouteError::Invalid { index, component, .. } => assert_eq!((*index, component.as_str()), (1, "bad")),
                other => panic!("{route}: {other:?}"),
            }
            assert!(err.to_string().contains(needle), "{route}: {err}");
        }
    }

    #[test]
    fn reserved_routes_are_reported_but_routable() {
        let r = router(
            "/",
            &[
                ("/.well-known/spin/fie", "a"),
                ("/.well-known/spindle/...", "b"),
                ("/.well-known/spin", "c"),
                ("/.well-known/spin/...", "d"),
            ],
        );
        assert_eq!(r.reserved_routes(), vec![("/.well-known/spin/fie", "a"), ("/.well-known/spin/...", "d")]);
        assert!(router("/", &[("/...", "all")]).reserved_routes().is_empty());
    }

    #[test]
    fn synthetic_match_is_a_root_wildcard() {
        let m = RouteMatch::synthetic("backend", "/api/items");
        assert_eq!(m.component_id, "backend");
        assert_eq!(m.raw_route, "/...");
        assert_eq!(m.matched_route, "/...");
        assert_eq!(m.component_route, "");
        assert_eq!(m.path_info, "/api/items");
        assert!(m.named.is_empty());
    }
}
