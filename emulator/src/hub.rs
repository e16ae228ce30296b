//! The JSON hub protocol (records end with 0x1E) and the built-in test hub.

use serde_json::{json, Value};

/// The record separator of the JSON hub protocol.
pub const RS: char = '\u{1e}';

/// What one client record asks the connection to do.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send this record to the caller.
    Reply(String),
    /// Send this record to every connection of the hub on this instance.
    Broadcast(String),
    /// Send this record, then close the connection.
    Close(String),
}

/// Identity facts `whoami` reports.
#[derive(Debug, Clone, Default)]
pub struct WhoAmI {
    /// Instance name.
    pub instance: String,
    /// Connection id.
    pub connection_id: String,
    /// Hub name.
    pub hub: String,
    /// User id from the token.
    pub user: Option<String>,
    /// `asrs_request_id` seen at negotiate.
    pub request_id_at_negotiate: Option<String>,
    /// `asrs_request_id` seen at connect.
    pub request_id_at_connect: Option<String>,
    /// Host header seen.
    pub host: String,
    /// TLS SNI seen, if TLS.
    pub sni: Option<String>,
}

/// A record with the separator appended.
pub fn record(v: &Value) -> String {
    let mut s = v.to_string();
    s.push(RS);
    s
}

/// Answers the handshake record.
pub fn handshake(msg: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(msg)
        .map_err(|_| "Handshake request is not valid JSON.".to_string())?;
    match v.get("protocol").and_then(Value::as_str) {
        Some("json") => Ok(record(&json!({}))),
        Some(p) => Err(format!("The protocol '{p}' is not supported.")),
        None => Err("Handshake request has no protocol.".into()),
    }
}

/// A close record with an error.
pub fn close_record(error: &str) -> String {
    record(&json!({"type": 7, "error": error, "allowReconnect": false}))
}

/// Handles one (post-handshake) client record.
pub fn handle(msg: &str, who: &WhoAmI) -> Vec<Action> {
    let v: Value = match serde_json::from_str(msg) {
        Ok(v) => v,
        Err(_) => {
            return vec![Action::Close(close_record(
                "Connection closed with an error. InvalidDataException: Error reading JSON.",
            ))]
        }
    };
    match v.get("type").and_then(Value::as_i64) {
        Some(1) => invoke(&v, who),
        Some(6) | Some(5) => vec![],
        Some(7) => vec![Action::Close(record(&json!({"type": 7})))],
        _ => vec![Action::Close(close_record(
            "Connection closed with an error. InvalidDataException: Unknown message type.",
        ))],
    }
}

fn invoke(v: &Value, who: &WhoAmI) -> Vec<Action> {
    let id = v
        .get("invocationId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let target = v.get("target").and_then(Value::as_str).unwrap_or_default();
    let args = v
        .get("arguments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let completion = |result: Value| -> Vec<Action> {
        match &id {
            Some(id) => vec![Action::Reply(record(
                &json!({"type": 3, "invocationId": id, "result": result}),
            ))],
            None => vec![],
        }
    };
    match (target, args.len()) {
        ("echo", 1) => completion(args[0].clone()),
        ("broadcast", 1) => {
            let mut out = vec![Action::Broadcast(record(
                &json!({"type": 1, "target": "broadcast", "arguments": [args[0].clone()]}),
            ))];
            out.extend(completion(Value::Null));
            out
        }
        ("whoami", 0) => completion(json!({
            "instance": who.instance,
            "connectionId": who.connection_id,
            "hub": who.hub,
            "user": who.user,
            "requestIdAtNegotiate": who.request_id_at_negotiate,
            "requestIdAtConnect": who.request_id_at_connect,
            "host": who.host,
            "sni": who.sni,
        })),
        ("close", 1) => {
            let reason = args[0].as_str().unwrap_or("closed by the server").to_string();
            let mut out = completion(Value::Null);
            out.push(Action::Close(record(&json!({"type": 7, "error": reason, "allowReconnect": false}))));
            out
        }
        (t @ ("echo" | "broadcast" | "whoami" | "close"), n) => error_completion(&id, &format!(
            "Failed to invoke '{t}' due to an error on the server. InvalidDataException: Invocation provides {n} argument(s) but target expects a different number."
        )),
        (t, _) => error_completion(&id, &format!("Failed to invoke '{t}' due to an error on the server. HubException: Method does not exist.")),
    }
}

fn error_completion(id: &Option<String>, error: &str) -> Vec<Action> {
    match id {
        Some(id) => vec![Action::Reply(record(
            &json!({"type": 3, "invocationId": id, "error": error}),
        ))],
        None => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_and_invocations() {
        assert_eq!(
            handshake(r#"{"protocol":"json","version":1}"#).unwrap(),
            "{}\u{1e}"
        );
        assert!(handshake(r#"{"protocol":"messagepack","version":1}"#).is_err());
        assert!(handshake("nope").is_err());
        let who = WhoAmI {
            instance: "a".into(),
            ..Default::default()
        };
        let r = handle(
            r#"{"type":1,"invocationId":"0","target":"echo","arguments":["hi"]}"#,
            &who,
        );
        assert_eq!(
            r,
            vec![Action::Reply(
                "{\"invocationId\":\"0\",\"result\":\"hi\",\"type\":3}\u{1e}".into()
            )]
        );
        let r = handle(
            r#"{"type":1,"invocationId":"1","target":"whoami","arguments":[]}"#,
            &who,
        );
        assert!(matches!(&r[0], Action::Reply(s) if s.contains("\"instance\":\"a\"")));
        let r = handle(r#"{"type":1,"target":"broadcast","arguments":[1]}"#, &who);
        assert_eq!(r.len(), 1);
        assert!(matches!(&handle("{oops", &who)[0], Action::Close(_)));
        assert!(
            matches!(&handle(r#"{"type":1,"invocationId":"2","target":"nope","arguments":[]}"#, &who)[0], Action::Reply(s) if s.contains("does not exist"))
        );
        assert!(handle(r#"{"type":6}"#, &who).is_empty());
    }
}
