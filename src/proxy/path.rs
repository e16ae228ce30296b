//! Path normalisation before routing. An upstream that resolves `..`, decodes `%2e`, reads `\`
//! as `/` or `..;` as `..` would otherwise serve another path than the one the edge routed, so
//! the edge routes on one canonical form and forwards exactly that form:
//!
//! - percent-encoded unreserved characters are decoded (`%2e` -> `.`, `%7E` -> `~`), other
//!   escapes kept with upper-case hex (RFC 3986 6.2.2: both keep the URI's meaning);
//! - `\` is a `/` (as browsers read it in http URLs), and repeated slashes are one (as nginx's
//!   `merge_slashes`);
//! - `.` segments are dropped and `..` removes the segment before it (RFC 3986 5.2.4).
//!
//! What cannot be normalised safely is refused (`400`): `..` above the root, encoded `/` and
//! `\` (a separator or data, depending on the upstream), `%00`, a `%` that is not an escape,
//! escapes that decode to bytes that are not UTF-8 (among them the overlong `%C0%AE`, a `.` to
//! some old decoders), and dot segments with parameters (`..;x`, which some servers read as `..`).

use std::borrow::Cow;

/// Why a path cannot be normalised safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// It does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: an upstream may decode it into a separator, or not.
    EncodedSeparator,
    /// `%00`.
    Nul,
    /// Escapes that decode to bytes that are not UTF-8.
    NotUtf8,
    /// A `..` with no segment left to remove.
    AboveRoot,
    /// A `.` or `..` segment with `;` parameters.
    DotWithParams,
}

/// The normalised form of `path` (without its query): borrowed when `path` already is.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, BadPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(BadPath::NotAbsolute);
    }
    if !needs_work(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    let canonical = decode(bytes)?;
    let out = remove_dot_segments(&canonical)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// Whether `path` may differ from its normal form: the common path has no escape, backslash,
/// empty segment or segment starting with a dot, and is then left as it is at the cost of one
/// scan.
fn needs_work(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        if b == b'%' || b == b'\\' || (prev == b'/' && (b == b'/' || b == b'.')) {
            return true;
        }
        prev = b;
    }
    false
}

/// Decodes unreserved escapes, upper-cases the others, turns `\` into `/`, and checks what the
/// escapes decode to.
fn decode(path: &[u8]) -> Result<String, BadPath> {
    let mut out = String::with_capacity(path.len());
    // Every escape's byte, in order: together with the literal bytes they must form UTF-8.
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < path.len() {
        match path[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    path.get(i + 1).and_then(|&c| hex(c)),
                    path.get(i + 2).and_then(|&c| hex(c)),
                ) else {
                    return Err(BadPath::BadEscape);
                };
                let byte = hi << 4 | lo;
                match byte {
                    0 => return Err(BadPath::Nul),
                    b'/' | b'\\' => return Err(BadPath::EncodedSeparator),
                    _ if is_unreserved(byte) => out.push(char::from(byte)),
                    _ => {
                        out.push('%');
                        out.push(char::from(HEX[usize::from(hi)]));
                        out.push(char::from(HEX[usize::from(lo)]));
                    }
                }
                decoded.push(byte);
                i += 3;
            }
            b'\\' => {
                out.push('/');
                decoded.push(b'/');
                i += 1;
            }
            _ => {
                // `path` is a &str and `%`/`\` are ASCII, so the run up to the next one is
                // whole characters.
                let end = path[i..]
                    .iter()
                    .position(|&c| c == b'%' || c == b'\\')
                    .map_or(path.len(), |n| i + n);
                let run = std::str::from_utf8(&path[i..end]).map_err(|_| BadPath::NotUtf8)?;
                out.push_str(run);
                decoded.extend_from_slice(run.as_bytes());
                i = end;
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(BadPath::NotUtf8);
    }
    Ok(out)
}

/// RFC 3986 5.2.4 over a decoded path, merging empty segments; `..` above the root is refused
/// rather than dropped, since no honest client sends it.
fn remove_dot_segments(path: &str) -> Result<String, BadPath> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // `path` starts with `/`: the first split item is the empty string before it.
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(BadPath::AboveRoot)?;
            }
            s if matches!(s.split(';').next(), Some("." | "..")) => {
                return Err(BadPath::DotWithParams)
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    fn norm(p: &str) -> Result<String, BadPath> {
        normalize(p).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/client/negotiate",
            "/client/",
            "/a.b/c..d/...",
            "/a;b/c",
            "/%7Bx%7D",
            "/caf\u{e9}",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_go() {
        for (p, want) in [
            ("/public/../internal/secret", "/internal/secret"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a/b/../../c", "/c"),
            ("/public/%2e%2e/internal", "/internal"),
            ("/public/%2E%2e/internal", "/internal"),
            ("/public/.%2E/internal", "/internal"),
            ("/public/%2e/x", "/public/x"),
        ] {
            assert_eq!(norm(p).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn separators() {
        assert_eq!(norm("/public/..\\internal").as_deref(), Ok("/internal"));
        assert_eq!(norm("/a\\b").as_deref(), Ok("/a/b"));
        assert_eq!(
            norm("//client//negotiate").as_deref(),
            Ok("/client/negotiate")
        );
        assert_eq!(norm("/a//").as_deref(), Ok("/a/"));
        for p in ["/public/..%2finternal", "/a%2Fb", "/a%5cb", "/a%5C..%5Cb"] {
            assert_eq!(norm(p), Err(BadPath::EncodedSeparator), "{p}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(norm("/%7euser/%41").as_deref(), Ok("/~user/A"));
        assert_eq!(norm("/a%3ab%20c").as_deref(), Ok("/a%3Ab%20c"));
        assert_eq!(norm("/%25%32%65").as_deref(), Ok("/%252e"), "decoded once");
        assert_eq!(norm("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
        for p in ["/a%", "/a%2", "/a%zz", "/%g0"] {
            assert_eq!(norm(p), Err(BadPath::BadEscape), "{p}");
        }
        assert_eq!(norm("/x%00y"), Err(BadPath::Nul));
        for p in ["/%C0%AE%C0%AE/x", "/%E9", "/%C3\u{e9}"] {
            assert_eq!(norm(p), Err(BadPath::NotUtf8), "{p}");
        }
    }

    #[test]
    fn refusals() {
        for p in [
            "/..",
            "/../x",
            "/a/../..",
            "/%2e%2e",
            "/a/..\\..",
            "\\..\\x",
        ] {
            let want = if p.starts_with('/') {
                BadPath::AboveRoot
            } else {
                BadPath::NotAbsolute
            };
            assert_eq!(norm(p), Err(want), "{p}");
        }
        for p in ["/a/..;/b", "/a/.;x/b", "/a/%2e%2e;/b"] {
            assert_eq!(norm(p), Err(BadPath::DotWithParams), "{p}");
        }
        for p in ["", "*", "a/b", "http://x/"] {
            assert_eq!(norm(p), Err(BadPath::NotAbsolute), "{p}");
        }
    }

    /// Paths built from the pieces attacks are made of.
    fn paths() -> impl Strategy<Value = String> {
        // Refused pieces are rarer, so that most paths reach a normal form to check.
        let piece = prop_oneof![
            10 => Just("/"),
            10 => Just("."),
            10 => Just(".."),
            10 => Just("%2e"),
            10 => Just("%2E"),
            10 => Just("\\"),
            10 => Just(";"),
            10 => Just("a"),
            10 => Just("b~"),
            10 => Just("%41"),
            10 => Just("%3a"),
            10 => Just("\u{e9}"),
            1 => Just("%2f"),
            1 => Just("%5C"),
            1 => Just("%"),
            1 => Just("%00"),
            1 => Just("%C0%AE"),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| format!("/{}", v.concat()))
    }

    #[test]
    fn most_generated_paths_have_a_normal_form() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = paths();
        let ok = (0..1000)
            .filter(|_| {
                let path = strategy.new_tree(&mut runner).unwrap().current();
                normalize(&path).is_ok()
            })
            .count();
        assert!(ok > 300, "{ok} of 1000");
    }

    proptest! {
        #[test]
        fn normal_form_is_safe_and_stable(path in paths()) {
            if let Ok(out) = normalize(&path) {
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//") && !out.contains('\\'), "{out}");
                for seg in out.split('/') {
                    let base = seg.split(';').next().unwrap_or(seg);
                    prop_assert!(base != "." && base != "..", "{out}");
                }
                let lower = out.to_ascii_lowercase();
                prop_assert!(!lower.contains("%2e") && !lower.contains("%2f"), "{out}");
                prop_assert!(!lower.contains("%5c") && !lower.contains("%00"), "{out}");
                let again = normalize(&out);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(p)) if p == out.as_ref()), "{out}");
            }
        }

        #[test]
        fn plain_paths_are_kept(segs in proptest::collection::vec("[a-zA-Z0-9_~-][a-zA-Z0-9._~-]{0,8}", 0..8)) {
            let path = format!("/{}", segs.join("/"));
            prop_assert!(matches!(normalize(&path), Ok(Cow::Borrowed(_))), "{path}");
        }
    }
}
