// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! Raw byte tunnel for upgraded (e.g. WebSocket) HTTP/1.1 connections.
//!
//! Once the 101 is forwarded, the bytes are copied directly between the two sockets. Each
//! direction moves on its own, so a peer that only reads while it can write (an echo server)
//! cannot stall the other direction. Reads go into one scratch buffer per thread and are written
//! on at once; only bytes the destination cannot take yet are copied into a buffer owned by the
//! tunnel, which is freed as soon as they are written. An idle tunnel holds no buffer.

use bytes::{Buf, BytesMut};
use log::debug;
use pingora_core::protocols::Stream;
use pingora_error::{Error, ErrorType::*, Result};
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SCRATCH_SIZE: usize = 64 * 1024;
// Reads per direction per wake-up before yielding to other tasks.
const MAX_ROUNDS: usize = 16;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Read,
    Write,
}

/// One direction of the tunnel: bytes from `src` to `dst`.
#[derive(Default)]
struct Flow {
    // Bytes read but not yet accepted by the destination.
    pending: Option<BytesMut>,
    eof: bool,
    // `src` ended and `dst` was shut down.
    done: bool,
    bytes: usize,
}

impl Flow {
    fn new(prefix: Option<BytesMut>) -> Self {
        let pending = prefix.filter(|p| !p.is_empty());
        Flow {
            // Bytes read with the heads are tunnelled bytes too.
            bytes: pending.as_ref().map_or(0, |p| p.len()),
            pending,
            ..Default::default()
        }
    }

    /// Moves bytes until `src` would block; `Ready(Ok)` once `src` ended and `dst` is shut down.
    fn poll_copy(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Stream,
        dst: &mut Stream,
    ) -> Poll<std::result::Result<(), (Op, io::Error)>> {
        let mut rounds = 0;
        loop {
            if let Some(buf) = self.pending.as_mut() {
                while !buf.is_empty() {
                    let n = ready!(Pin::new(&mut *dst).poll_write(cx, buf)).map_err(|e| (Op::Write, e))?;
                    if n == 0 {
                        return Poll::Ready(Err((Op::Write, io::ErrorKind::WriteZero.into())));
                    }
                    buf.advance(n);
                }
                self.pending = None;
            }
            ready!(Pin::new(&mut *dst).poll_flush(cx)).map_err(|e| (Op::Write, e))?;
            if self.eof {
                ready!(Pin::new(&mut *dst).poll_shutdown(cx)).map_err(|e| (Op::Write, e))?;
                return Poll::Ready(Ok(()));
            }
            if rounds == MAX_ROUNDS {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            rounds += 1;
            ready!(self.poll_read_and_write(cx, src, dst))?;
        }
    }

    /// One read into the thread's scratch buffer, written on at once; what `dst` does not take
    /// is kept in `pending`.
    fn poll_read_and_write(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Stream,
        dst: &mut Stream,
    ) -> Poll<std::result::Result<(), (Op, io::Error)>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut read_buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut *src).poll_read(cx, &mut read_buf)).map_err(|e| (Op::Read, e))?;
            let n = read_buf.filled().len();
            if n == 0 {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            self.bytes += n;
            let written = match Pin::new(&mut *dst).poll_write(cx, &scratch[..n]) {
                Poll::Ready(Ok(m)) => m,
                Poll::Ready(Err(e)) => return Poll::Ready(Err((Op::Write, e))),
                Poll::Pending => 0,
            };
            if written < n {
                self.pending = Some(BytesMut::from(&scratch[written..n]));
            }
            Poll::Ready(Ok(()))
        })
    }
}

/// A client that goes away without a clean close (a reset, a closed tab) is how many upgraded
/// connections end: not an error of the proxy.
fn client_left(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// Copies bytes both ways between `downstream` and `upstream` until both sides have ended (an
/// end is passed on as a write shutdown, as for a half-close) or one fails. `down_prefix`/`up_prefix`
/// are upgraded bytes already read from each side. `read_timeout` bounds the silence of the
/// upstream, as it does for an upstream read outside the tunnel.
///
/// Returns the bytes moved (downstream to upstream, upstream to downstream), also when the
/// tunnel failed, and how it ended.
pub(crate) async fn run(
    downstream: &mut Stream,
    down_prefix: Option<BytesMut>,
    upstream: &mut Stream,
    up_prefix: Option<BytesMut>,
    read_timeout: Option<Duration>,
) -> ((usize, usize), Result<()>) {
    let mut to_up = Flow::new(down_prefix);
    let mut to_down = Flow::new(up_prefix);
    let mut last_upstream_read = Instant::now();
    let sleep = tokio::time::sleep(read_timeout.unwrap_or(Duration::from_secs(86400 * 365)));
    tokio::pin!(sleep);

    let result = poll_fn(|cx| {
        let up_before = to_down.bytes;
        if !to_up.done {
            match to_up.poll_copy(cx, downstream, upstream) {
                Poll::Ready(Ok(())) => to_up.done = true,
                Poll::Ready(Err((Op::Read, e))) if client_left(&e) => {
                    debug!("tunnel: downstream left: {e}");
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err((op, e))) => {
                    return Poll::Ready(Err(match op {
                        Op::Read => Error::because(ReadError, "tunnel: reading downstream", e)
                            .into_down(),
                        Op::Write => {
                            Error::because(WriteError, "tunnel: writing upstream", e).into_up()
                        }
                    }))
                }
                Poll::Pending => {}
            }
        }
        if !to_down.done {
            match to_down.poll_copy(cx, upstream, downstream) {
                Poll::Ready(Ok(())) => to_down.done = true,
                Poll::Ready(Err((Op::Write, e))) if client_left(&e) => {
                    debug!("tunnel: downstream left: {e}");
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err((op, e))) => {
                    return Poll::Ready(Err(match op {
                        Op::Read => {
                            Error::because(ReadError, "tunnel: reading upstream", e).into_up()
                        }
                        Op::Write => Error::because(WriteError, "tunnel: writing downstream", e)
                            .into_down(),
                    }))
                }
                Poll::Pending => {}
            }
        }
        // A side that ended is passed on as a write shutdown (a half-close); the tunnel ends
        // when both have. A peer that closed for good makes the other direction's writes fail.
        if to_up.done && to_down.done {
            return Poll::Ready(Ok(()));
        }
        if let Some(limit) = read_timeout {
            if to_down.bytes != up_before {
                // Cheaper than re-arming the timer on every read: re-armed only when it fires.
                last_upstream_read = Instant::now();
            }
            while sleep.as_mut().poll(cx).is_ready() {
                let deadline = last_upstream_read + limit;
                if Instant::now() >= deadline {
                    return Poll::Ready(Error::e_explain(
                        ReadTimedout,
                        format!("tunnel: no upstream bytes for {limit:?}"),
                    ));
                }
                sleep.as_mut().reset(deadline.into());
            }
        }
        Poll::Pending
    })
    .await;
    debug!(
        "tunnel closed: {} bytes up, {} bytes down, {:?}",
        to_up.bytes, to_down.bytes, result
    );
    ((to_up.bytes, to_down.bytes), result)
}
