//! Errors in a spin.toml, worded for the person who has to fix it: each
//! names the file, where in it (a line and column, or the field), what is
//! wrong and what to do about it.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest could not be read at all.
    #[error("{}: cannot read the manifest: {source}; check the path", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    /// A problem at a known place in the text (malformed TOML, an unknown
    /// field, a value of the wrong type).
    #[error("{}:{line}:{column}: {message}", file.display())]
    At { file: PathBuf, line: usize, column: usize, message: String },
    /// A problem with a field's value, e.g. `component.cart.source` or
    /// `[[trigger.http]] #2 route`.
    #[error("{}: {field}: {message}", file.display())]
    Field { file: PathBuf, field: String, message: String },
}

impl ManifestError {
    /// An error about `field` of the manifest `file`, worded like the
    /// manifest's own errors: `message` says what is wrong and how to fix it.
    pub fn field(file: impl Into<PathBuf>, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Field { file: file.into(), field: field.into(), message: message.into() }
    }

    /// An error from the `toml` crate, located in `text` by its span.
    pub(crate) fn from_toml(file: &Path, text: &str, error: &toml::de::Error, is_syntax: bool) -> ManifestError {
        let mut message = error.message().trim_end().to_string();
        if is_syntax {
            message = format!("invalid TOML: {message}");
        } else if message.starts_with("unknown field") {
            message.push_str("; remove it or fix its spelling (see the Spin manifest version 2 reference)");
        } else if message.starts_with("missing field") {
            message.push_str(" in this table; add it");
        }
        match error.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                ManifestError::At { file: file.to_path_buf(), line, column, message }
            }
            None => ManifestError::Field { file: file.to_path_buf(), field: "manifest".to_string(), message },
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, text.find('=').unwrap()), (1, 3));
        assert_eq!(line_and_column(text, text.rfind('=').unwrap()), (2, 4));
        assert_eq!(line_and_column(text, 999), (3, 1));
    }

    #[test]
    fn field_errors_name_file_and_field() {
        let e = ManifestError::field("spin.toml", "component.hello.source", "does not exist; run `bazaar build`");
        assert_eq!(e.to_string(), "spin.toml: component.hello.source: does not exist; run `bazaar build`");
    }
}
