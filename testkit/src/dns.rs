//! A DNS server for tests: UDP on 127.0.0.1, answering A queries from a map the test changes,
//! with a TTL of 0. Names it does not know get NXDOMAIN; a name set to [`Answer::ServFail`]
//! gets SERVFAIL, and one set to [`Answer::Silent`] gets no answer at all.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the server answers for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// These A records (AAAA queries get none).
    A(Vec<Ipv4Addr>),
    /// SERVFAIL.
    ServFail,
    /// Nothing: the query times out.
    Silent,
}

/// A running test DNS server; stopped on drop.
pub struct TestDns {
    /// Where it listens (`127.0.0.1:<port>`, UDP).
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    queries: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TestDns {
    /// Starts a server on an ephemeral port, knowing no name yet.
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(HashMap::new()));
        let queries = Arc::new(AtomicU64::new(0));
        let (a, q) = (answers.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                q.fetch_add(1, Ordering::Relaxed);
                let answers = a.lock().unwrap().clone();
                if let Some(reply) = reply(&buf[..n], &answers) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        TestDns {
            addr,
            answers,
            queries,
            task,
        }
    }

    /// Sets what `name` resolves to from now on.
    pub fn set(&self, name: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), answer);
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TYPE_A: u16 = 1;
const NOERROR: u16 = 0;
const SERVFAIL: u16 = 2;
const NXDOMAIN: u16 = 3;

/// The answer to one query message, or none (malformed, or a silent name).
fn reply(query: &[u8], answers: &HashMap<String, Answer>) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let (mut at, mut labels) = (12, Vec::new());
    loop {
        let len = *query.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        let label = query.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = query.get(12..at + 4)?;
    let name = labels.join(".");
    let (rcode, records) = match answers.get(&name) {
        None => (NXDOMAIN, vec![]),
        Some(Answer::Silent) => return None,
        Some(Answer::ServFail) => (SERVFAIL, vec![]),
        Some(Answer::A(ips)) if qtype == TYPE_A => (NOERROR, ips.clone()),
        Some(Answer::A(_)) => (NOERROR, vec![]),
    };
    let rd = u16::from_be_bytes([query[2], query[3]]) & 0x0100;
    // QR, AA, RA, and RD as asked.
    let flags = 0x8000 | 0x0400 | 0x0080 | rd | rcode;
    let mut out = Vec::with_capacity(question.len() + 12 + 16 * records.len());
    out.extend_from_slice(&query[0..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in records {
        // The name as a pointer to the question's (offset 12), type A, class IN, TTL 0.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_queries_from_the_map() {
        let mut map = HashMap::new();
        map.insert(
            "inst.test".into(),
            Answer::A(vec![Ipv4Addr::new(127, 0, 0, 2)]),
        );
        map.insert("bad.test".into(), Answer::ServFail);
        let r = reply(&query("Inst.Test", TYPE_A), &map).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34], "same id");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 2]);
        let r = reply(&query("inst.test", 28), &map).unwrap();
        assert_eq!((r[3] & 0x0f, r[7]), (0, 0), "AAAA: no record");
        assert_eq!(
            reply(&query("bad.test", TYPE_A), &map).unwrap()[3] & 0x0f,
            2
        );
        assert_eq!(reply(&query("nx.test", TYPE_A), &map).unwrap()[3] & 0x0f, 3);
    }
}
