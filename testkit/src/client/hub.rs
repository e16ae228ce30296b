//! The SignalR JSON hub protocol's text: records, the handshake, invocations, and the parts of
//! negotiate answers and SSE events that carry them.

/// The record separator that ends every JSON hub message.
pub const RS: char = '\u{1e}';

/// The JSON protocol handshake, as a record.
pub const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// An invocation record of `target` with string `arguments`, answered under `id`.
///
/// Written by hand rather than by `serde_json::json!`, whose maps sort their keys: this keeps
/// the field order of the official clients, and so the bytes the benches send.
pub fn invocation(id: &str, target: &str, arguments: &[&str]) -> String {
    let args: Vec<String> = arguments
        .iter()
        .map(|a| serde_json::Value::from(*a).to_string())
        .collect();
    format!(
        "{{\"type\":1,\"invocationId\":\"{id}\",\"target\":\"{target}\",\"arguments\":[{}]}}{RS}",
        args.join(",")
    )
}

/// The records in a text frame, poll answer or SSE event, without separators.
pub fn split_records(text: &str) -> Vec<String> {
    text.split(RS)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// The data of one SSE event (its `data: ` lines, joined).
pub fn sse_data(event: &str) -> String {
    event
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect()
}

/// The `connectionToken` of a negotiate answer's body.
pub fn connection_token(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["connectionToken"].as_str().map(str::to_string)
}

/// Whether `record` is the completion (type 3) of invocation `id`.
pub fn is_completion_of(record: &str, id: &str) -> bool {
    record.contains("\"type\":3") && record.contains(&format!("\"invocationId\":\"{id}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_invocations() {
        assert_eq!(
            invocation("7", "echo", &["m7"]),
            "{\"type\":1,\"invocationId\":\"7\",\"target\":\"echo\",\"arguments\":[\"m7\"]}\u{1e}"
        );
        assert_eq!(
            invocation("1", "whoami", &[]),
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"whoami\",\"arguments\":[]}\u{1e}"
        );
        assert_eq!(
            split_records("{}\u{1e}{\"type\":6}\u{1e}"),
            ["{}", "{\"type\":6}"]
        );
        assert!(split_records("").is_empty());
        assert_eq!(sse_data(":\r\ndata: {}\u{1e}\r\n\r\n"), "{}\u{1e}");
        assert_eq!(
            connection_token(b"{\"connectionToken\":\"t1\"}").as_deref(),
            Some("t1")
        );
        assert_eq!(connection_token(b"nope"), None);
        assert!(is_completion_of("{\"type\":3,\"invocationId\":\"2\"}", "2"));
        assert!(!is_completion_of(
            "{\"type\":3,\"invocationId\":\"21\"}",
            "2"
        ));
    }
}
