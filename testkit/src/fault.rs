//! A fault gate: a TCP forwarder on 127.0.0.1 in front of one upstream (an emulated instance,
//! an app server) whose behaviour a test switches while traffic flows: pass, refuse (a killed
//! process), blackhole (a process that accepts and never answers) or slow. Point an edge
//! endpoint's `address:` at `gate.addr`, keeping the instance's host name, so that the
//! instance still sees its own `Host`.

use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What the gate does with connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forwards both ways.
    Pass,
    /// New connects are refused; held connections are reset.
    Refuse,
    /// Accepts and reads, never forwards nor answers (held connections too).
    Blackhole,
    /// Waits this long before forwarding each new connection's first bytes.
    Slow(Duration),
}

/// A TCP forwarder on 127.0.0.1 in front of one upstream whose behaviour tests switch at run time.
pub struct FaultGate {
    /// Where clients (the edge) connect.
    pub addr: std::net::SocketAddr,
    state: watch::Sender<Fault>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    accepted: AtomicU64,
    /// The listening socket's descriptor while it listens, so that `set` can close it for new
    /// connects at once (from any thread, without waiting for the accept loop).
    listening: Mutex<Option<socket2::Socket>>,
}

impl FaultGate {
    /// Starts forwarding 127.0.0.1:<ephemeral> to `target` (Pass).
    pub async fn start(target: std::net::SocketAddr) -> FaultGate {
        let listener = bind("127.0.0.1:0".parse().expect("an address")).expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared {
            accepted: AtomicU64::new(0),
            listening: Mutex::new(None),
        });
        shared.hold(&listener);
        let (state, rx) = watch::channel(Fault::Pass);
        let task = tokio::spawn(accept_loop(listener, addr, target, rx, shared.clone()));
        FaultGate {
            addr,
            state,
            shared,
            task,
        }
    }

    /// Switches behaviour. Refuse: closes the listening socket (new connects are refused) and
    /// resets every connection it holds; back to Pass re-binds the same port. Blackhole: accepts
    /// and reads but never forwards or answers (held connections too). Slow(d): waits d before
    /// forwarding each new connection's first bytes.
    pub fn set(&self, fault: Fault) {
        if fault == Fault::Refuse {
            // Stop listening now: a connect right after `set` must already be refused.
            if let Some(s) = self.shared.lock().take() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        self.state.send_replace(fault);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultGate {
    fn drop(&mut self) {
        // Dropping the sender ends every connection task; the accept loop is aborted.
        self.task.abort();
        if let Some(s) = self.shared.lock().take() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<socket2::Socket>> {
        self.listening.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a duplicate of the listener's descriptor: shutting it down stops the listener.
    fn hold(&self, listener: &TcpListener) {
        *self.lock() = SockRef::from(listener).try_clone().ok();
    }
}

/// A listener on `addr` that may take the port over again at once (SO_REUSEADDR).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    mut rx: watch::Receiver<Fault>,
    shared: Arc<Shared>,
) {
    loop {
        if *rx.borrow_and_update() == Fault::Refuse {
            drop(listener);
            // Wait for another fault, then listen on the same port again.
            loop {
                if rx.changed().await.is_err() {
                    return;
                }
                if *rx.borrow_and_update() != Fault::Refuse {
                    break;
                }
            }
            listener = loop {
                match bind(addr) {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            shared.hold(&listener);
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Shut down by `set(Refuse)`, whose state follows at once; or out of
                    // descriptors for a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, target, rx.clone()));
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Closes `s` with a reset (RST), as a killed process's connections end.
fn reset(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// One accepted connection, under the fault of the moment and the ones that follow.
async fn connection(client: TcpStream, target: SocketAddr, mut rx: watch::Receiver<Fault>) {
    let first = *rx.borrow_and_update();
    match first {
        Fault::Refuse => return reset(client),
        Fault::Blackhole => return blackhole(client, rx).await,
        Fault::Slow(d) => {
            let waited = tokio::time::sleep(d);
            tokio::pin!(waited);
            loop {
                tokio::select! {
                    _ = &mut waited => break,
                    changed = rx.changed() => {
                        if changed.is_err() || *rx.borrow_and_update() == Fault::Refuse {
                            return reset(client);
                        }
                    }
                }
            }
        }
        Fault::Pass => {}
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return reset(client);
    };
    forward(client, upstream, rx).await;
}

/// Reads and drops what `client` sends, answering nothing, until it leaves or `Refuse`.
async fn blackhole(mut client: TcpStream, mut rx: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            n = client.read(&mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
            changed = rx.changed() => {
                if changed.is_err() || *rx.borrow_and_update() == Fault::Refuse {
                    return reset(client);
                }
            }
        }
    }
}

/// Copies both ways (half-closes passed on) until both sides are done, or a fault ends it.
async fn forward(mut client: TcpStream, mut upstream: TcpStream, mut rx: watch::Receiver<Fault>) {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_done, mut upstream_done) = (false, false);
    while !(client_done && upstream_done) {
        tokio::select! {
            n = client.read(&mut up), if !client_done => match n {
                Ok(n) if n > 0 => {
                    if upstream.write_all(&up[..n]).await.is_err() {
                        reset(upstream);
                        return reset(client);
                    }
                }
                _ => {
                    client_done = true;
                    let _ = upstream.shutdown().await;
                }
            },
            n = upstream.read(&mut down), if !upstream_done => match n {
                Ok(n) if n > 0 => {
                    if client.write_all(&down[..n]).await.is_err() {
                        reset(upstream);
                        return reset(client);
                    }
                }
                Ok(_) => {
                    upstream_done = true;
                    let _ = client.shutdown().await;
                }
                // The upstream reset: so does the gate, as a direct connection would have.
                Err(_) => return reset(client),
            },
            changed = rx.changed() => {
                let fault = if changed.is_err() { Fault::Refuse } else { *rx.borrow_and_update() };
                match fault {
                    Fault::Refuse => {
                        reset(upstream);
                        return reset(client);
                    }
                    Fault::Blackhole => {
                        drop(upstream);
                        return blackhole(client, rx).await;
                    }
                    // New connections only.
                    Fault::Pass | Fault::Slow(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1 (each connection echoes until EOF).
    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, what: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(what).await?;
        let mut back = vec![0u8; what.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .map_err(|_| std::io::Error::other("no answer in 5 s"))??;
        Ok(back)
    }

    #[tokio::test]
    async fn passes_refuses_rebinds_and_resets_held_connections() {
        let gate = FaultGate::start(echo().await).await;
        let mut held = TcpStream::connect(gate.addr).await.unwrap();
        assert_eq!(round_trip(&mut held, b"ping").await.unwrap(), b"ping");
        gate.set(Fault::Refuse);
        // New connects are refused at once, and the held connection is reset.
        let e = TcpStream::connect(gate.addr).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf))
            .await
            .expect("the reset arrives");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
        // Back to Pass: the same port listens again.
        gate.set(Fault::Pass);
        let mut again = loop {
            match TcpStream::connect(gate.addr).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        assert_eq!(round_trip(&mut again, b"back").await.unwrap(), b"back");
        assert_eq!(gate.accepted(), 2);
    }

    #[tokio::test]
    async fn blackhole_accepts_and_never_answers_even_held_connections() {
        let gate = FaultGate::start(echo().await).await;
        let mut held = TcpStream::connect(gate.addr).await.unwrap();
        assert_eq!(round_trip(&mut held, b"ping").await.unwrap(), b"ping");
        gate.set(Fault::Blackhole);
        let mut fresh = TcpStream::connect(gate.addr).await.unwrap();
        for s in [&mut held, &mut fresh] {
            s.write_all(b"hello?").await.unwrap();
            let mut buf = [0u8; 8];
            let quiet = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
            assert!(quiet.is_err(), "answered: {quiet:?}");
        }
        assert_eq!(gate.accepted(), 2);
        // Refuse ends the blackholed connections with a reset too.
        gate.set(Fault::Refuse);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), fresh.read(&mut buf))
            .await
            .expect("the reset arrives");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
    }

    #[tokio::test]
    async fn slow_delays_the_first_bytes_of_new_connections() {
        let gate = FaultGate::start(echo().await).await;
        gate.set(Fault::Slow(Duration::from_millis(400)));
        let started = tokio::time::Instant::now();
        let mut s = TcpStream::connect(gate.addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"slow").await.unwrap(), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(400));
        // Then the connection flows at full speed.
        let t = tokio::time::Instant::now();
        assert_eq!(round_trip(&mut s, b"fast").await.unwrap(), b"fast");
        assert!(t.elapsed() < Duration::from_millis(300));
    }

    #[tokio::test]
    async fn dropping_it_stops_everything() {
        let gate = FaultGate::start(echo().await).await;
        let addr = gate.addr;
        let mut held = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut held, b"ping").await.unwrap(), b"ping");
        drop(gate);
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(5), held.read(&mut buf))
            .await
            .expect("the held connection ends");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
