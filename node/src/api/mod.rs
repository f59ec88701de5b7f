//! The daemon's local API for agents: HTTP/JSON, with server-sent events
//! for streams, served by `axum` next to the driver on the daemon's
//! runtime. The routes are in [`routes`] and described by the OpenAPI
//! document `node/api/openapi.json` (served at `/v1/openapi.json`; a test
//! checks it against [`routes::ROUTES`]).
//!
//! - **Transport.** A Unix domain socket by default ([`Listen::Unix`],
//!   `DIR/api.sock`, mode 0600), or HTTP on a loopback address
//!   ([`Listen::Http`]; any other address is refused).
//! - **Authentication.** Over HTTP every request carries `Authorization:
//!   Bearer <token>`, the token read from a file in the data directory
//!   (created with 32 random bytes in hex, mode 0600, when missing; see
//!   [`auth`]); anything else is answered 401. On the Unix socket, the
//!   file's permissions are the authentication: only the daemon's user can
//!   connect, and the daemon also checks the connecting process's user id
//!   (`SO_PEERCRED`) and drops anyone else. A token there would add nothing:
//!   whoever can connect as that user can read the token file too.
//! - **How requests reach the node.** The node belongs to the driver's
//!   task; every request is a [`driver::Command::Request`] with an id,
//!   answered through [`driver::EventSink::on_answer`], which [`Sink`]
//!   (wrapped around the daemon's own sink) hands to the waiting request.
//!   DHT lookups are answered by the node's `QueryDone` event for their
//!   key; streams are fed from the node's events.
//! - **Bounds.** Request bodies: [`MAX_BODY_BYTES`]. Requests waiting for
//!   the node: [`MAX_PENDING`], each at most [`ANSWER_TIMEOUT`]. DHT
//!   lookups waiting: [`MAX_DHT_WAITERS`], each at most
//!   [`MAX_DHT_TIMEOUT`]. Streams open at once: [`MAX_STREAMS`], each with
//!   a queue of [`STREAM_QUEUE`] events; a consumer that falls behind loses
//!   events and is told how many (a `lagged` event), so a slow agent never
//!   makes the daemon hold more.

pub mod auth;
mod http;
mod hub;
pub mod metrics;
pub mod routes;
mod view;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

pub use hub::{Features, Hub, Sink};
pub use routes::router;

use crate::driver;

/// Largest request body accepted (bigger ones get 413). The largest
/// legitimate body is a 1 KiB payload in base64 plus its JSON.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Requests waiting for the node's answer at once (more get 503).
pub const MAX_PENDING: usize = 256;
/// How long a request waits for the node's answer before 503.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// DHT lookups waiting for their outcome at once (more get 503).
pub const MAX_DHT_WAITERS: usize = 64;
/// How long a DHT lookup waits by default, and at most.
pub const DEFAULT_DHT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_DHT_TIMEOUT: Duration = Duration::from_secs(60);
/// Event streams open at once (more get 503).
pub const MAX_STREAMS: usize = 32;
/// Events queued per stream before the stream loses events (and counts
/// them). With events of at most ~3 KiB (a 1 KiB payload, in base64 and
/// as text), the streams hold at most `MAX_STREAMS * STREAM_QUEUE * 3`
/// KiB = 12 MiB however slowly agents read.
pub const STREAM_QUEUE: usize = 128;

/// The file names the API uses in the daemon's data directory.
pub const SOCKET_FILE: &str = "api.sock";
pub const TOKEN_FILE: &str = "api.token";

/// Where the API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A Unix domain socket at this path (mode 0600).
    Unix(PathBuf),
    /// HTTP on a loopback address, with a bearer token.
    Http(SocketAddr),
}

impl Listen {
    /// The default: the socket `api.sock` in the data directory.
    #[must_use]
    pub fn default_in(data_dir: &Path) -> Listen {
        Listen::Unix(data_dir.join(SOCKET_FILE))
    }

    /// `unix:PATH` or `http:IP:PORT` (a loopback IP: `127.0.0.1`, `[::1]`).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a path, e.g. unix:/run/grove/api.sock".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = text.strip_prefix("http:") {
            let addr: SocketAddr = addr
                .parse()
                .map_err(|_| format!("`{addr}` is not IP:PORT (e.g. http:127.0.0.1:7700)"))?;
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "{} is not a loopback address: the API serves local agents only \
                     (use 127.0.0.1 or [::1], or a Unix socket)",
                    addr.ip()
                ));
            }
            return Ok(Listen::Http(addr));
        }
        Err(format!(
            "`{text}`: expected unix:PATH or http:127.0.0.1:PORT"
        ))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Http(a) => write!(f, "http:{a}"),
        }
    }
}

/// Bind the API's listener: a Unix socket (a stale one left by a daemon
/// that died is replaced; a live one is an error), or a loopback TCP port
/// with the token from `token_file` (created if missing). Returns what to
/// serve; binding happens here so that errors stop the daemon at start.
///
/// # Errors
///
/// The socket cannot be bound, a path is in the way, or the token file
/// cannot be read or created (the error names the path).
pub async fn bind(listen: &Listen, token_file: &Path) -> anyhow::Result<Bound> {
    match listen {
        Listen::Unix(path) => {
            let listener = auth::bind_unix(path)
                .await
                .with_context(|| format!("API socket {}", path.display()))?;
            Ok(Bound {
                listener: Listener::Unix(listener),
                token: None,
                at: listen.clone(),
            })
        }
        Listen::Http(addr) => {
            if !addr.ip().is_loopback() {
                bail!("API address {addr} is not a loopback address");
            }
            let token = auth::load_or_create_token(token_file)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the API to {addr}"))?;
            let at = Listen::Http(listener.local_addr().context("reading the API address")?);
            Ok(Bound {
                listener: Listener::Tcp(listener),
                token: Some(token),
                at,
            })
        }
    }
}

/// A bound API listener, ready to serve.
pub struct Bound {
    listener: Listener,
    token: Option<auth::Token>,
    /// Where it listens (for HTTP, with the port the OS chose for port 0).
    pub at: Listen,
}

enum Listener {
    Unix(auth::OwnerOnly),
    Tcp(tokio::net::TcpListener),
}

impl Bound {
    /// Serve the API for `hub` until the process ends. A connection that
    /// fails affects only itself.
    pub async fn serve(self, hub: Arc<Hub>) {
        let app = router(hub, self.token);
        let result = match self.listener {
            Listener::Unix(l) => axum::serve(l, app).await,
            Listener::Tcp(l) => axum::serve(l, app).await,
        };
        if let Err(e) = result {
            tracing::error!("the local API stopped: {e}");
        }
    }
}

/// Send `request` to the driver (for tests and tools built on the hub).
pub(crate) fn request(id: u64, request: driver::Request) -> driver::Command {
    driver::Command::Request(Box::new((id, request)))
}
