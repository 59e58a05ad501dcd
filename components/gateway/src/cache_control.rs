//! `Cache-Control` (RFC 9111 §5.2), parsed directive by directive.
//!
//! A field is a comma-separated list of `name` or `name=value` directives;
//! names are case-insensitive tokens, values are tokens or quoted strings
//! (which may contain commas and `\`-escapes), and unknown directives are
//! ignored. The parser is deliberately conservative where the RFC leaves a
//! choice: an unparsable or conflicting age counts as 0 (stale), and the
//! field-qualified forms `private="..."` and `no-cache="..."` count as the
//! unqualified ones.

/// The largest delta-seconds a cache must handle (RFC 9111 §1.2.2).
const MAX_DELTA_SECS: u64 = 1 << 31;

/// The directives the gateway acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl CacheControl {
    pub fn parse(field: &str) -> Self {
        let mut parsed = Self::default();
        for (name, value) in directives(field) {
            match name.as_str() {
                "no-store" => parsed.no_store = true,
                "no-cache" => parsed.no_cache = true,
                "private" => parsed.private = true,
                "public" => parsed.public = true,
                "must-revalidate" => parsed.must_revalidate = true,
                "max-age" => merge_age(&mut parsed.max_age, value.as_deref()),
                "s-maxage" => merge_age(&mut parsed.s_maxage, value.as_deref()),
                _ => {}
            }
        }
        parsed
    }

    /// How long a shared cache may serve the response: `s-maxage` overrides
    /// `max-age` (RFC 9111 §5.2.2.10).
    pub fn shared_max_age(&self) -> Option<u64> {
        self.s_maxage.or(self.max_age)
    }

    /// Whether a shared cache may keep this response to a request that
    /// carried `Authorization`, and serve it to others: only when the
    /// service says so with `public`, `s-maxage` or `must-revalidate`
    /// (RFC 9111 §3.5).
    pub fn shared_despite_authorization(&self) -> bool {
        self.public || self.s_maxage.is_some() || self.must_revalidate
    }
}

/// A second age directive that disagrees with the first makes the response
/// stale (RFC 9111 §4.2.1).
fn merge_age(slot: &mut Option<u64>, value: Option<&str>) {
    let age = value.map_or(0, delta_seconds);
    *slot = match *slot {
        Some(previous) if previous != age => Some(0),
        _ => Some(age),
    };
}

/// Non-negative decimal seconds, capped at 2^31; anything else is 0.
fn delta_seconds(value: &str) -> u64 {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    value.parse::<u64>().map_or(MAX_DELTA_SECS, |secs| secs.min(MAX_DELTA_SECS))
}

/// The field's directives: lower-case names, values unquoted.
fn directives(field: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut chars = field.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ',' || c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return out;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ',' && !c.is_whitespace()) {
            name.push(c.to_ascii_lowercase());
        }
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut value = None;
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let mut text = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => text.extend(chars.next()),
                        c => text.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',' && !c.is_whitespace()) {
                    text.push(c);
                }
            }
            value = Some(text);
        }
        // Anything but whitespace between a directive and the next comma makes
        // it malformed: its value becomes empty, which no age parses as.
        let mut junk = false;
        while let Some(c) = chars.next_if(|c| *c != ',') {
            junk |= !c.is_whitespace();
        }
        if junk {
            value = Some(String::new());
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_ages() {
        let cc = CacheControl::parse("public, max-age=60, s-maxage=300");
        assert_eq!(cc, CacheControl { public: true, max_age: Some(60), s_maxage: Some(300), ..Default::default() });
        assert_eq!(cc.shared_max_age(), Some(300));
        assert_eq!(CacheControl::parse("max-age=60").shared_max_age(), Some(60));
        assert_eq!(CacheControl::parse("").shared_max_age(), None);
    }

    #[test]
    fn names_are_case_insensitive() {
        let cc = CacheControl::parse("No-Store, PRIVATE, Max-Age=5, No-Cache");
        assert!(cc.no_store && cc.private && cc.no_cache);
        assert_eq!(cc.max_age, Some(5));
    }

    #[test]
    fn quoted_values_may_hold_commas_and_escapes() {
        let cc = CacheControl::parse(r#"private="set-cookie, x-a", max-age="30", community="no-store\"x""#);
        assert!(cc.private);
        assert!(!cc.no_store, "no-store inside a quoted value is not a directive");
        assert_eq!(cc.max_age, Some(30));
        // Escaped quotes do not end the string.
        let cc = CacheControl::parse(r#"ext="a\", no-store", max-age=7"#);
        assert!(!cc.no_store);
        assert_eq!(cc.max_age, Some(7));
    }

    #[test]
    fn invalid_ages_are_stale() {
        for field in ["max-age=abc", "max-age=-1", "max-age=", "max-age", "max-age=1.5", "max-age=60 60"] {
            assert_eq!(CacheControl::parse(field).max_age, Some(0), "{field}");
        }
        assert_eq!(CacheControl::parse("max-age=99999999999999999999").max_age, Some(MAX_DELTA_SECS));
    }

    #[test]
    fn conflicting_duplicates_are_stale_and_agreeing_ones_count_once() {
        assert_eq!(CacheControl::parse("max-age=60, max-age=30").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age=60, max-age=60").max_age, Some(60));
    }

    #[test]
    fn whitespace_and_empty_elements_are_tolerated() {
        let cc = CacheControl::parse(" ,, max-age = 10 ,\tno-store ,");
        assert_eq!(cc.max_age, Some(10));
        assert!(cc.no_store);
    }

    #[test]
    fn unknown_directives_are_ignored() {
        let cc = CacheControl::parse("proxy-revalidate, stale-while-revalidate=30, immutable");
        assert_eq!(cc, CacheControl::default());
    }

    #[test]
    fn what_lets_a_response_to_a_signed_in_caller_be_shared() {
        for field in ["public", "Public, max-age=60", "s-maxage=30", "must-revalidate"] {
            assert!(CacheControl::parse(field).shared_despite_authorization(), "{field}");
        }
        for field in ["", "max-age=60", "proxy-revalidate", "community=\"public\""] {
            assert!(!CacheControl::parse(field).shared_despite_authorization(), "{field}");
        }
    }
}
