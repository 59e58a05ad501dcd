//! The admin endpoint's bearer token.
//!
//! Swapping code into a running app is as powerful as deploying it, so the
//! admin endpoint wants a secret even on loopback (other local users and
//! processes can reach loopback too). Without `--admin-token`, `bazaar up`
//! makes a fresh random one at every start and leaves it, readable by the
//! owner only, in `<state-dir>/admin-token`, where `bazaar swap` finds it.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const TOKEN_FILE: &str = "admin-token";

pub fn token_file(state_dir: &Path) -> PathBuf {
    state_dir.join(TOKEN_FILE)
}

/// The token to protect the admin endpoint with: `given`, or a new random
/// one written to the token file.
pub fn resolve(given: Option<String>, state_dir: &Path) -> Result<String> {
    if let Some(token) = given.filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for the admin token: {e}"))?;
    let token = hex::encode(bytes);
    let file = token_file(state_dir);
    // A private file renamed into place: an existing file may have looser
    // permissions, which writing into it would keep, and two hosts sharing
    // a state directory must not trip over each other.
    let tmp = state_dir.join(format!(".{TOKEN_FILE}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut out| out.write_all(token.as_bytes())).and_then(|()| std::fs::rename(&tmp, &file));
    written.with_context(|| format!("writing the admin token to {}", file.display()))?;
    Ok(token)
}

/// The token a running `bazaar up` wrote to `state_dir`.
pub fn read(state_dir: &Path) -> Result<String> {
    let file = token_file(state_dir);
    let token = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no admin token at {}: is `bazaar up` running with this state directory? \
             Pass --state-dir DIR, or --admin-token TOKEN (or BAZAAR_ADMIN_TOKEN) if it was started with one",
            file.display()
        )
    })?;
    Ok(token.trim().to_string())
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guess was right.
pub fn matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_private_and_readable_back() {
        let dir = tempfile::tempdir().unwrap();
        let token = resolve(None, dir.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(read(dir.path()).unwrap(), token);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(token_file(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_ne!(resolve(None, dir.path()).unwrap(), token, "a new token at every start");
        assert_eq!(resolve(Some("given".into()), dir.path()).unwrap(), "given");
    }

    #[test]
    fn comparison() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "ab"));
    }
}
