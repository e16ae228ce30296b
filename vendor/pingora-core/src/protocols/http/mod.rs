// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! HTTP/1.x and HTTP/2 implementation APIs

pub mod authority;
pub mod body_buffer;
pub mod bridge;
pub mod client;
pub mod compression;
pub mod conditional_filter;
pub mod custom;
pub mod date;
pub mod error_resp;
pub mod server;
pub mod subrequest;
pub mod v1;
pub mod v2;

pub use server::{ReusableHttpStream, Session as ServerSession};

/// A request head for log lines: method, path and header names only. The query and the header
/// values are left out because they can carry credentials (`Authorization`, `Cookie`,
/// `access_token=`), which must not reach a log at any level.
pub struct LogSafeRequest<'a>(pub &'a http::request::Parts);

impl std::fmt::Display for LogSafeRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = self.0;
        write!(f, "{} {} {:?} [", parts.method, parts.uri.path(), parts.version)?;
        for (i, name) in parts.headers.keys().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name}")?;
        }
        write!(f, "]")
    }
}

/// Header names for log lines, without their values (cookies, tokens).
pub struct LogSafeHeaderNames<'a>(pub &'a http::HeaderMap);

impl std::fmt::Display for LogSafeHeaderNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The Pingora server name string
pub const SERVER_NAME: &[u8; 7] = b"Pingora";

/// An enum to hold all possible HTTP response events.
pub enum HttpTask {
    /// the response header and the boolean end of response flag
    Header(Box<pingora_http::ResponseHeader>, bool),
    /// A piece of request or response body and the end of request/response boolean flag.
    Body(Option<bytes::Bytes>, bool),
    /// Request or response body bytes that have been upgraded on H1.1, and EOF bool flag.
    UpgradedBody(Option<bytes::Bytes>, bool),
    /// HTTP response trailer
    Trailer(Option<Box<http::HeaderMap>>),
    /// Signal that the response is already finished
    Done,
    /// Signal that the reading of the response encountered errors.
    Failed(pingora_error::BError),
}

// Tasks are logged at debug level: bodies (a negotiate answer's tokens) and header values
// (cookies) are shown as sizes and names only.
impl std::fmt::Debug for HttpTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn size(b: &Option<bytes::Bytes>) -> String {
            b.as_ref()
                .map_or_else(|| "None".to_string(), |b| format!("{} bytes", b.len()))
        }
        match self {
            HttpTask::Header(h, end) => {
                let names = LogSafeHeaderNames(&h.headers);
                write!(f, "Header({} {names}, {end})", h.status)
            }
            HttpTask::Body(b, end) => write!(f, "Body({}, {end})", size(b)),
            HttpTask::UpgradedBody(b, end) => write!(f, "UpgradedBody({}, {end})", size(b)),
            HttpTask::Trailer(t) => match t {
                Some(t) => write!(f, "Trailer({})", LogSafeHeaderNames(t)),
                None => write!(f, "Trailer(None)"),
            },
            HttpTask::Done => write!(f, "Done"),
            HttpTask::Failed(e) => write!(f, "Failed({e:?})"),
        }
    }
}

impl HttpTask {
    /// Whether this [`HttpTask`] means the end of the response.
    pub fn is_end(&self) -> bool {
        match self {
            HttpTask::Header(_, end) => *end,
            HttpTask::Body(_, end) => *end,
            HttpTask::UpgradedBody(_, end) => *end,
            HttpTask::Trailer(_) => true,
            HttpTask::Done => true,
            HttpTask::Failed(_) => true,
        }
    }

    /// The [`HttpTask`] type as string.
    pub fn type_str(&self) -> &'static str {
        match self {
            HttpTask::Header(..) => "Header",
            HttpTask::Body(..) => "Body",
            HttpTask::UpgradedBody(..) => "UpgradedBody",
            HttpTask::Trailer(_) => "Trailer",
            HttpTask::Done => "Done",
            HttpTask::Failed(_) => "Failed",
        }
    }
}
