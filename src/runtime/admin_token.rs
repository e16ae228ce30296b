//! The admin listener's bearer token: read from its file or environment variable when a
//! generation is compiled (so a reload rotates it), never shown (its `Debug` and every error
//! leave it out), and compared in constant time.

use std::fmt;

use crate::config::{read_bounded, AdminTokenSource, PathError};

/// The longest token file read: a token is a line, not a document.
const MAX_FILE_BYTES: u64 = 4096;
/// The shortest token accepted: a guessable one would protect nothing.
pub const MIN_TOKEN_CHARS: usize = 16;

/// A bearer token the admin listener requires.
pub struct AdminToken(Box<[u8]>);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token from `source`; errors name the key and never the token.
    pub fn load(source: &AdminTokenSource) -> Result<AdminToken, PathError> {
        match source {
            AdminTokenSource::File(path) => {
                // The reader's errors name the file (never its content).
                let bytes = read_bounded(path, MAX_FILE_BYTES)
                    .map_err(|m| PathError::new("admin.token_file", m))?;
                AdminToken::parse(bytes).map_err(|m| {
                    PathError::new("admin.token_file", format!("{}: {m}", path.display()))
                })
            }
            AdminTokenSource::Env(name) => std::env::var_os(name)
                .ok_or_else(|| "is not set".to_string())
                .and_then(|v| AdminToken::parse(v.into_encoded_bytes()))
                .map_err(|m| PathError::new("admin.token_env", format!("${name} {m}"))),
        }
    }

    /// The token in `text`, without surrounding whitespace (a file's final newline).
    fn parse(text: Vec<u8>) -> Result<AdminToken, String> {
        let token = text.trim_ascii();
        if !token.iter().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        if token.len() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token must have at least {MIN_TOKEN_CHARS} characters"
            ));
        }
        Ok(AdminToken(token.into()))
    }

    /// Whether `other` is the same token (a reload that rotates it says so).
    pub fn same_as(&self, other: &AdminToken) -> bool {
        self.matches(&other.0)
    }

    /// Whether `presented` is the token; the time taken does not depend on where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        if presented.len() != self.0.len() {
            return false;
        }
        let diff = presented
            .iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    #[test]
    fn parses_trims_and_matches() {
        let t = AdminToken::parse(format!("  {TOKEN}\r\n").into_bytes()).unwrap();
        assert!(t.matches(TOKEN.as_bytes()));
        for wrong in ["", "0123456789abcdef-tokeN", "0123456789abcdef-token ", "x"] {
            assert!(!t.matches(wrong.as_bytes()), "{wrong:?}");
        }
        assert_eq!(format!("{t:?}"), "AdminToken(<redacted>)");
    }

    #[test]
    fn refuses_short_or_unprintable_tokens_without_showing_them() {
        for bad in ["short", "0123456789 abcdef", "0123456789abcdef\u{e9}"] {
            let e = AdminToken::parse(bad.as_bytes().to_vec()).unwrap_err();
            assert!(!e.contains(bad), "{e}");
        }
        assert!(AdminToken::parse(b"\n\n".to_vec()).is_err());
    }

    #[test]
    fn reads_bounded_regular_files_and_set_variables() {
        let dir = std::env::temp_dir().join(format!("se-admin-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let t = AdminToken::load(&AdminTokenSource::File(file.clone())).unwrap();
        assert!(t.matches(TOKEN.as_bytes()));

        std::fs::write(&file, vec![b'a'; 5000]).unwrap();
        let e = AdminToken::load(&AdminTokenSource::File(file.clone())).unwrap_err();
        assert_eq!(e.path, "admin.token_file");
        assert!(e.message.contains("larger than 4096 bytes"), "{e:?}");
        for not_a_file in [dir.clone(), "/dev/zero".into()] {
            let e = AdminToken::load(&AdminTokenSource::File(not_a_file)).unwrap_err();
            assert!(e.message.contains("not a regular file"), "{e:?}");
        }
        let e = AdminToken::load(&AdminTokenSource::File(dir.join("none"))).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e:?}");
        std::fs::remove_dir_all(&dir).unwrap();

        let e =
            AdminToken::load(&AdminTokenSource::Env("SE_TEST_UNSET_TOKEN_VAR".into())).unwrap_err();
        assert_eq!(e.path, "admin.token_env");
        assert!(
            e.message.contains("$SE_TEST_UNSET_TOKEN_VAR is not set"),
            "{e:?}"
        );
    }
}
