//! Spin's variable templates: the values of `[component.X.variables]`, such
//! as `"https://{{ api_host }}/v1"`. Text outside `{{ }}` is literal; inside
//! is the (trimmed) name of an app variable. There is no escape for `{{`.
//! (Spin: `crates/expressions/src/template.rs`.)

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

/// Splits a template into its parts, or says why it is malformed.
pub fn parse(template: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(expression) = rest.strip_prefix("{{") {
            let Some((name, after)) = expression.split_once("}}") else {
                return Err("\"{{\" is not closed by \"}}\"".to_string());
            };
            parts.push(Part::Variable(name.trim()));
            rest = after;
        } else {
            let end = rest.find("{{").unwrap_or(rest.len());
            parts.push(Part::Literal(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_variables() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("a").unwrap(), vec![Part::Literal("a")]);
        assert_eq!(
            parse("a-{{ expr }}-b").unwrap(),
            vec![Part::Literal("a-"), Part::Variable("expr"), Part::Literal("-b")]
        );
        assert_eq!(parse("{{x}}{{ y }}").unwrap(), vec![Part::Variable("x"), Part::Variable("y")]);
    }

    #[test]
    fn unclosed_braces_are_an_error() {
        assert!(parse("{{ matched }} {{ unmatched").unwrap_err().contains("not closed"));
    }
}
