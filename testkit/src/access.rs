//! The edge's access lines read back from its log, for tests that follow requests across
//! processes (which replica served what, and which endpoint it chose).

/// One access line: `CLIENT "METHOD TARGET" STATUS route=.. pool=.. endpoint=.. rule=.. ms=..`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    /// The request method.
    pub method: String,
    /// The request target as logged (credentials redacted).
    pub target: String,
    /// The status sent (0: none).
    pub status: u16,
    /// The endpoint chosen (`-` for none).
    pub endpoint: String,
    /// The affinity rule that chose it (`-` for none).
    pub rule: String,
}

impl AccessLine {
    /// The value of query parameter `name`, as logged (still percent-encoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Every access line (log target `access`) in `log`, in order.
pub fn access_lines(log: &str) -> Vec<AccessLine> {
    log.lines().filter_map(parse).collect()
}

fn parse(line: &str) -> Option<AccessLine> {
    let rest = line.split_once(" access] ")?.1;
    let (_client, rest) = rest.split_once(" \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (method, target) = request.split_once(' ')?;
    let status = rest.split(' ').next()?.parse().ok()?;
    let field = |key: &str| {
        rest.split(' ')
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or("-")
            .to_string()
    };
    Some(AccessLine {
        method: method.to_string(),
        target: target.to_string(),
        status,
        endpoint: field("endpoint="),
        rule: field("rule="),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_access_line() {
        let log = "[2025-01-01T00:00:00Z INFO  access] 127.0.0.1 \"GET /client/?hub=chat&asrs_request_id=AB%2B&id=<redacted>\" 101 route=routes[0] pool=signalr endpoint=a.service.signalr.net rule=request_id ms=3.1\nother line";
        let l = access_lines(log);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].method, "GET");
        assert_eq!(l[0].path(), "/client/");
        assert_eq!(l[0].status, 101);
        assert_eq!(l[0].endpoint, "a.service.signalr.net");
        assert_eq!(l[0].rule, "request_id");
        assert_eq!(l[0].param("asrs_request_id"), Some("AB%2B"));
    }
}
