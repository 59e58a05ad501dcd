//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Every capability that leaves the process (outbound HTTP, service chaining,
//! and later Postgres and Redis) asks this one type, so the rules are the same
//! everywhere and match Spin's:
//! - an entry is `scheme://host[:port]`; `*` is allowed for the scheme, the
//!   host and the port; `*.example.com` matches subdomains (not the apex);
//!   a port may be a range `8000-8999`; an IPv4 network may be written in
//!   CIDR form `10.0.0.0/8`;
//! - without a port the scheme's well-known port is implied (http 80,
//!   https 443, postgres 5432, redis 6379, mysql 3306, mqtt 1883);
//! - `http://self` lets a component call its own app with a relative URL;
//!   `http://<id>.spin.internal` and `http://*.spin.internal` allow service
//!   chaining to one or every component;
//! - `{{ variable }}` templates are expanded from the app's variables when
//!   the app loads;
//! - `insecure:allow-all` allows everything.
use std::net::Ipv4Addr;

/// The parsed allow-list of one component.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    allow_all: bool,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq)]
struct Rule {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Clone, Debug, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: the suffix including the leading dot.
    Subdomains(String),
    Network { addr: u32, prefix: u8 },
    SelfApp,
}

#[derive(Clone, Debug, PartialEq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

/// A destination a component wants to reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    /// The explicit port, or `None` for the scheme's default.
    pub port: Option<u16>,
}

/// The host name of a chained component: `<id>.spin.internal`.
pub const CHAINING_SUFFIX: &str = ".spin.internal";

impl AllowedHosts {
    /// Parses a component's entries. `resolve` expands `{{ name }}`
    /// templates; an entry that cannot be parsed is an error naming it.
    pub fn parse(entries: &[String], resolve: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut allowed = AllowedHosts::default();
        for raw in entries {
            let entry = expand_templates(raw, &resolve)?;
            if entry == "insecure:allow-all" {
                allowed.allow_all = true;
                continue;
            }
            allowed.rules.push(parse_rule(&entry).map_err(|e| {
                format!("allowed_outbound_hosts entry {raw:?} is not valid: {e}")
            })?);
        }
        Ok(allowed)
    }

    /// Whether `dest` may be reached.
    pub fn allows(&self, dest: &Destination<'_>) -> bool {
        if self.allow_all {
            return true;
        }
        let host = dest.host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let scheme = dest.scheme.to_ascii_lowercase();
        let Some(port) = dest.port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.rules.iter().any(|rule| {
            rule.scheme.as_deref().is_none_or(|s| s == scheme)
                && rule.port.matches(port)
                && rule.host.matches(&host)
        })
    }

    /// Whether the component may call its own app with relative URLs.
    pub fn allows_self(&self) -> bool {
        self.allow_all || self.rules.iter().any(|r| r.host == HostPattern::SelfApp)
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
            HostPattern::Network { addr, prefix } => host.parse::<Ipv4Addr>().is_ok_and(|ip| {
                let mask = if *prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                (u32::from(ip) & mask) == (*addr & mask)
            }),
            HostPattern::SelfApp => false,
        }
    }
}

impl PortPattern {
    fn matches(&self, port: u16) -> bool {
        match self {
            PortPattern::Any => true,
            PortPattern::Range(lo, hi) => (*lo..=*hi).contains(&port),
        }
    }
}

/// The well-known port of the schemes Spin components use.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "postgres" | "postgresql" => 5432,
        "redis" | "rediss" => 6379,
        "mysql" => 3306,
        "mqtt" => 1883,
        "mqtts" => 8883,
        _ => return None,
    })
}

fn expand_templates(raw: &str, resolve: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("allowed_outbound_hosts entry {raw:?} has an unclosed `{{{{`"))?;
        let name = rest[start + 2..start + end].trim();
        let value = resolve(name).ok_or_else(|| {
            format!("allowed_outbound_hosts entry {raw:?} uses variable {name:?}, which has no value; declare it in [variables] or set SPIN_VARIABLE_{}", name.to_ascii_uppercase())
        })?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("it needs a scheme, like `https://example.com` or `*://example.com`")?;
    let scheme = match scheme {
        "*" => None,
        s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            Some(s.to_ascii_lowercase())
        }
        _ => return Err(format!("{scheme:?} is not a scheme")),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') && !looks_like_cidr(authority) {
        return Err("it must not have a path; write only scheme://host[:port]".into());
    }
    let (host, port) = split_host_port(authority)?;
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "" => return Err("the host is empty".into()),
        "*" => HostPattern::Any,
        "self" | "self.alt" => HostPattern::SelfApp,
        h if h.starts_with("*.") => HostPattern::Subdomains(h[1..].to_string()),
        h if h.contains('*') => return Err("`*` may only be the whole host or its first label (`*.example.com`)".into()),
        h if h.contains('/') => parse_cidr(h)?,
        h => HostPattern::Exact(h.trim_start_matches('[').trim_end_matches(']').to_string()),
    };
    let port = match port {
        Some("*") => PortPattern::Any,
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
                if lo > hi {
                    return Err(format!("port range {p} is empty"));
                }
                PortPattern::Range(lo, hi)
            }
            None => {
                let p = parse_port(p)?;
                PortPattern::Range(p, p)
            }
        },
        None => match scheme.as_deref() {
            None => PortPattern::Any,
            Some(s) => {
                let p = default_port(s).ok_or_else(|| {
                    format!("scheme {s:?} has no default port; add one, like {s}://host:1234")
                })?;
                PortPattern::Range(p, p)
            }
        },
    };
    Ok(Rule { scheme, host, port })
}

fn looks_like_cidr(authority: &str) -> bool {
    authority.split_once('/').is_some_and(|(ip, rest)| {
        ip.parse::<Ipv4Addr>().is_ok() && rest.split(':').next().is_some_and(|p| p.parse::<u8>().is_ok())
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or("unclosed `[` in IPv6 host")?;
        return Ok((host, rest.strip_prefix(':')));
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse().map_err(|_| format!("{p:?} is not a port number"))
}

fn parse_cidr(h: &str) -> Result<HostPattern, String> {
    let (ip, prefix) = h.split_once('/').expect("caller checked for '/'");
    let ip: Ipv4Addr = ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or("the network prefix must be 0 to 32")?;
    Ok(HostPattern::Network { addr: u32::from(ip), prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries, |name| (name == "api_host").then(|| "api.example.com".into())).unwrap()
    }

    fn dest<'a>(scheme: &'a str, host: &'a str, port: Option<u16>) -> Destination<'a> {
        Destination { scheme, host, port }
    }

    #[test]
    fn exact_host_uses_the_scheme_default_port() {
        let h = hosts(&["https://example.com"]);
        assert!(h.allows(&dest("https", "example.com", None)));
        assert!(h.allows(&dest("https", "example.com", Some(443))));
        assert!(!h.allows(&dest("https", "example.com", Some(8443))));
        assert!(!h.allows(&dest("http", "example.com", None)));
        assert!(!h.allows(&dest("https", "other.com", None)));
    }

    #[test]
    fn wildcards_for_scheme_host_and_port() {
        let h = hosts(&["*://example.com:*"]);
        assert!(h.allows(&dest("http", "example.com", Some(1234))));
        assert!(h.allows(&dest("redis", "example.com", None)));
        let h = hosts(&["https://*:443"]);
        assert!(h.allows(&dest("https", "anything.test", None)));
        assert!(!h.allows(&dest("http", "anything.test", Some(443))));
    }

    #[test]
    fn subdomain_wildcard_does_not_match_the_apex() {
        let h = hosts(&["https://*.example.com"]);
        assert!(h.allows(&dest("https", "api.example.com", None)));
        assert!(h.allows(&dest("https", "a.b.example.com", None)));
        assert!(!h.allows(&dest("https", "example.com", None)));
        assert!(!h.allows(&dest("https", "badexample.com", None)));
    }

    #[test]
    fn port_ranges_and_cidr() {
        let h = hosts(&["http://127.0.0.1:8000-8999", "postgres://10.0.0.0/8"]);
        assert!(h.allows(&dest("http", "127.0.0.1", Some(8080))));
        assert!(!h.allows(&dest("http", "127.0.0.1", Some(9000))));
        assert!(h.allows(&dest("postgres", "10.1.2.3", None)));
        assert!(!h.allows(&dest("postgres", "11.1.2.3", None)));
    }

    #[test]
    fn templates_expand_from_variables() {
        let h = hosts(&["https://{{ api_host }}"]);
        assert!(h.allows(&dest("https", "api.example.com", None)));
        let err = AllowedHosts::parse(&["https://{{ missing }}".into()], |_| None).unwrap_err();
        assert!(err.contains("missing") && err.contains("SPIN_VARIABLE_MISSING"), "{err}");
    }

    #[test]
    fn self_and_allow_all() {
        assert!(hosts(&["http://self"]).allows_self());
        assert!(!hosts(&["http://example.com"]).allows_self());
        let all = hosts(&["insecure:allow-all"]);
        assert!(all.allows(&dest("ftp", "x", Some(21))) && all.allows_self());
    }

    #[test]
    fn chaining_hosts_are_ordinary_rules() {
        let h = hosts(&["http://backend.spin.internal"]);
        assert!(h.allows(&dest("http", "backend.spin.internal", None)));
        assert!(!h.allows(&dest("http", "other.spin.internal", None)));
        assert!(hosts(&["http://*.spin.internal"]).allows(&dest("http", "other.spin.internal", None)));
    }

    #[test]
    fn invalid_entries_are_explained() {
        for (entry, needle) in [
            ("example.com", "scheme"),
            ("foo://example.com", "default port"),
            ("https://exa*mple.com", "first label"),
            ("https://example.com/path", "path"),
            ("https://example.com:99999", "port"),
            ("https://example.com:90-80", "empty"),
        ] {
            let err = AllowedHosts::parse(&[entry.to_string()], |_| None).unwrap_err();
            assert!(err.contains(entry) && err.contains(needle), "{entry}: {err}");
        }
    }
}
