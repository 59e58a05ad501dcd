//! Spin's rules for names in a manifest (`crates/serde/src/id.rs`):
//! an id is one or more words joined by a separator, each word starting
//! with an ASCII letter and made of ASCII letters and digits, each word all
//! lower case or all upper case.
//! - component ids are kebab-case: `cart`, `cart-api`, `api-v2`;
//! - variable names (app and component) are lower snake_case: `api_key`;
//! - key-value store and SQLite database names may be either: `default`,
//!   `my-store`, `my_store`.
//!
//! Each check returns why a name is invalid, for the caller to put in an
//! error that names the field.

/// A component id: kebab-case.
pub fn check_component_id(id: &str) -> Result<(), String> {
    check_words(id, '-', false).map_err(|why| format!("{why}; component ids are kebab-case, such as \"cart-api\""))
}

/// A variable name: lower snake_case.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    check_words(name, '_', true)
        .map_err(|why| format!("{why}; variable names are lower snake_case, such as \"api_key\""))
}

/// A key-value store or SQLite database name: kebab-case or snake_case.
pub fn check_store_name(name: &str) -> Result<(), String> {
    check_words(name, '-', false)
        .or_else(|_| check_words(name, '_', false))
        .map_err(|_| "expected kebab-case or snake_case, such as \"default\" or \"my-store\"".to_string())
}

fn check_words(id: &str, separator: char, lower_only: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("it is empty".to_string());
    }
    let other = if separator == '-' { '_' } else { '-' };
    if id.contains(other) {
        return Err(format!("words are separated by {separator:?}, not {other:?}"));
    }
    for word in id.split(separator) {
        let Some(first) = word.chars().next() else {
            return Err(format!("{separator:?} must join two words (no leading, trailing or doubled {separator:?})"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!("each word starts with an ASCII letter, not {first:?}"));
        }
        if let Some(bad) = word.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(format!("{bad:?} is not allowed; use ASCII letters and digits"));
        }
        let upper = first.is_ascii_uppercase();
        if word.chars().any(|c| c.is_ascii_alphabetic() && c.is_ascii_uppercase() != upper) {
            return Err(format!("{word:?} mixes upper and lower case"));
        }
        if lower_only && upper {
            return Err(format!("{word:?} is not lower case"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_are_kebab_case() {
        for ok in ["cart", "cart-api", "api-v2", "a1", "HTTP-server"] {
            check_component_id(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("cart_api", "not '_'"),
            ("-cart", "must join two words"),
            ("cart--api", "must join two words"),
            ("cart-", "must join two words"),
            ("2cart", "starts with an ASCII letter"),
            ("cart-2", "starts with an ASCII letter"),
            ("Cart", "mixes upper and lower case"),
            ("cart.api", "'.' is not allowed"),
        ] {
            let e = check_component_id(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("kebab-case"), "{bad}: {e}");
        }
    }

    #[test]
    fn variable_names_are_lower_snake_case() {
        for ok in ["a", "api_key", "a1_b2"] {
            check_variable_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "API_KEY", "apiKey", "api-key", "_x", "x_", "a__b", "a_1", "1a"] {
            assert!(check_variable_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_names_are_kebab_or_snake_case() {
        for ok in ["default", "my-store", "my_store", "CACHE"] {
            check_store_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "my store", "my-store_x", "-x"] {
            assert!(check_store_name(bad).is_err(), "{bad}");
        }
    }
}
