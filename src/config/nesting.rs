//! A bound on YAML nesting, checked before serde sees the text. serde_yaml reads the whole
//! event stream of a document before its own recursion limit applies, and the parser's cost
//! grows with depth (4 MB of `[` kept `-t` busy for minutes), while a real configuration file
//! nests about 6 levels. This pass runs the same parser (libyaml, which serde_yaml is built
//! on) one event at a time and stops at the first collection nested deeper than the bound:
//! it agrees exactly with what serde_yaml would read, and a deep document costs no more than
//! its first levels (libyaml looks ahead a bounded distance for each event).

use std::mem::MaybeUninit;

/// The deepest nesting of collections a configuration file may have.
pub const MAX_NESTING: usize = 64;

/// Refuses `text` if a collection in it nests deeper than `max`; the error names the line.
/// Text that does not parse is left to serde_yaml, which explains the error better.
pub fn check(text: &str, max: usize) -> Result<(), String> {
    match deepest(text, max) {
        Deepest::Within(_) | Deepest::Invalid => Ok(()),
        Deepest::Beyond { line } => Err(format!(
            "YAML nested deeper than {max} levels (line {line})"
        )),
    }
}

/// What the event pass found.
#[derive(Debug, PartialEq, Eq)]
enum Deepest {
    /// The whole stream parsed; its deepest nesting.
    Within(usize),
    /// A collection nested deeper than the bound starts on this line (1-based).
    Beyond { line: u64 },
    /// The parser stopped on an error first.
    Invalid,
}

/// Parses `text` event by event until the stream ends, an error, or a collection deeper
/// than `max`.
fn deepest(text: &str, max: usize) -> Deepest {
    let mut parser = MaybeUninit::<unsafe_libyaml::yaml_parser_t>::uninit();
    // SAFETY: `yaml_parser_initialize` initializes the parser it is given (and fails only
    // when out of memory); the input outlives the parser, which is deleted before returning;
    // every event that `yaml_parser_parse` filled is deleted, and one it failed to fill
    // is not touched.
    unsafe {
        if unsafe_libyaml::yaml_parser_initialize(parser.as_mut_ptr()).fail {
            return Deepest::Invalid;
        }
        let parser = parser.as_mut_ptr();
        unsafe_libyaml::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        let (mut depth, mut most) = (0usize, 0usize);
        let found = loop {
            let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
            if unsafe_libyaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break Deepest::Invalid;
            }
            let event = event.as_mut_ptr();
            let (kind, line) = ((*event).type_, (*event).start_mark.line);
            unsafe_libyaml::yaml_event_delete(event);
            match kind {
                unsafe_libyaml::YAML_SEQUENCE_START_EVENT
                | unsafe_libyaml::YAML_MAPPING_START_EVENT => {
                    depth += 1;
                    most = most.max(depth);
                    if depth > max {
                        break Deepest::Beyond { line: line + 1 };
                    }
                }
                unsafe_libyaml::YAML_SEQUENCE_END_EVENT
                | unsafe_libyaml::YAML_MAPPING_END_EVENT => {
                    depth = depth.saturating_sub(1);
                }
                unsafe_libyaml::YAML_STREAM_END_EVENT => break Deepest::Within(most),
                _ => {}
            }
        };
        unsafe_libyaml::yaml_parser_delete(parser);
        found
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn what_a_config_file_nests() {
        let text = r#"
# a comment [[[[ {{{{
server: { threads: 2 }
listeners:
  - address: 127.0.0.1:8080
    tls: { cert: "a[.pem", key: 'b{''.pem' }
pools:
  signalr:
    endpoints:
      - connection_string: "Endpoint=https://a;AccessKey=k[;Version=1.0;"
    note: |
      [[[[[[[[[[ text, not YAML
routes:
  - { path: "/client/", methods: [GET, POST] }
"#;
        let root_pools_signalr_endpoints_endpoint = 5;
        assert_eq!(
            deepest(text, MAX_NESTING),
            Deepest::Within(root_pools_signalr_endpoints_endpoint)
        );
        assert!(check(text, 5).is_ok());
        assert_eq!(
            check(text, 4).unwrap_err(),
            "YAML nested deeper than 4 levels (line 10)"
        );
        assert_eq!(deepest("a: [1", MAX_NESTING), Deepest::Invalid);
        assert!(check("a: [1", MAX_NESTING).is_ok(), "left to serde_yaml");
    }

    #[test]
    fn deep_documents_are_refused_with_their_line() {
        let n = 100_000;
        for text in [
            "[".repeat(n),
            "{".repeat(n),
            format!("a: {}1{}", "[".repeat(n), "]".repeat(n)),
            format!("{}x", "- ".repeat(n)),
            format!("{}x", "? ".repeat(n)),
            (0..200)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect(),
            format!("a: 1\nb: \"x\ny\"\nc: {}", "[".repeat(65)),
        ] {
            let e = check(&text, MAX_NESTING).unwrap_err();
            assert!(
                e.starts_with("YAML nested deeper than 64 levels (line "),
                "{e}"
            );
        }
        let e = check("a: 1\n\nb: [[[[[[[[[[1]]]]]]]]]]\n", 8).unwrap_err();
        assert!(e.ends_with("(line 3)"), "{e}");
    }

    /// Any YAML value: scalars and nested sequences and mappings, with keys that need quotes.
    fn value() -> impl Strategy<Value = serde_yaml::Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(serde_yaml::Value::from),
            "[ -~\n]{0,12}".prop_map(serde_yaml::Value::from),
            Just(serde_yaml::Value::Null),
        ];
        leaf.prop_recursive(12, 64, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::from),
                prop::collection::vec(("[a-z \\[{#:'\"|>-]{1,6}", inner), 0..4).prop_map(|kv| {
                    serde_yaml::Value::Mapping(
                        kv.into_iter()
                            .map(|(k, v)| (serde_yaml::Value::from(k), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    /// Collections nested in `v`, `v` included.
    fn real_depth(v: &serde_yaml::Value) -> usize {
        match v {
            serde_yaml::Value::Sequence(s) => 1 + s.iter().map(real_depth).max().unwrap_or(0),
            serde_yaml::Value::Mapping(m) => 1 + m.values().map(real_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The pass measures exactly what the document nests, whatever its strings hold, and
        /// refuses it exactly when that is beyond the bound.
        #[test]
        fn measures_what_serde_yaml_reads(v in value(), max in 0usize..8) {
            let text = serde_yaml::to_string(&v).unwrap();
            let real = real_depth(&v);
            prop_assert_eq!(deepest(&text, usize::MAX), Deepest::Within(real), "{}", text);
            prop_assert_eq!(check(&text, max).is_err(), real > max, "{}", text);
        }
    }
}
