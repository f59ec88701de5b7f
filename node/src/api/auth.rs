//! Who may use the API: the bearer token of HTTP (a file only the
//! daemon's user can read), and the Unix socket's owner-only access.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use rand::RngCore;
use tokio::net::{UnixListener, UnixStream};

/// Bytes of OS entropy in a new token (written as 64 hex digits).
pub const TOKEN_BYTES: usize = 32;
/// Longest token file read (a token is 64 hex digits; a longer file is
/// not one of ours).
const MAX_TOKEN_FILE_BYTES: u64 = 1024;

/// The bearer token HTTP requests must carry.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    /// Never the secret itself, so that it cannot reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Whether an `Authorization` header value is `Bearer <this token>`,
    /// compared in constant time (a timing difference must not reveal how
    /// much of a guess was right).
    #[must_use]
    pub fn accepts(&self, header: &[u8]) -> bool {
        let Some(given) = header.strip_prefix(b"Bearer ") else {
            return false;
        };
        let expected = self.0.as_bytes();
        if given.len() != expected.len() {
            return false;
        }
        given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The token in `path`, or a new one written there (32 random bytes in
/// hex, mode 0600) when the file does not exist.
///
/// # Errors
///
/// Naming the file: it cannot be read or created, other users may read it
/// (its mode lets group or others in: a token they can read is no secret),
/// or it does not hold a token (empty, not one line of printable ASCII,
/// longer than 1 KiB).
pub fn load_or_create_token(path: &Path) -> anyhow::Result<Token> {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.is_file() {
                bail!("API token file {} is not a regular file", path.display());
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "API token file {} has mode {mode:03o}: other users may read it \
                     (chmod 600 it, or delete it to have a new one made)",
                    path.display()
                );
            }
            if meta.len() > MAX_TOKEN_FILE_BYTES {
                bail!(
                    "API token file {} is {} bytes, not a token (at most {MAX_TOKEN_FILE_BYTES})",
                    path.display(),
                    meta.len()
                );
            }
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading API token file {}", path.display()))?;
            let token = text.trim();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                bail!(
                    "API token file {} does not hold a token (one line of printable ASCII)",
                    path.display()
                );
            }
            Ok(Token(token.to_owned()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_token(path),
        Err(e) => Err(e).with_context(|| format!("reading API token file {}", path.display())),
    }
}

fn create_token(path: &Path) -> anyhow::Result<Token> {
    let mut bytes = [0u8; TOKEN_BYTES];
    // Real mode only (the API is never built for the simulator): a secret
    // must come from OS entropy.
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Created with mode 0600 from the start (never readable by others,
    // even for an instant), and never over an existing file.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating API token file {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing API token file {}", path.display()))?;
    tracing::info!(path = %path.display(), "created a new API token file");
    Ok(Token(token))
}

/// Bind a Unix socket at `path`, mode 0600. A socket file left by a
/// daemon that is gone (nothing accepts on it) is replaced; a live one, or
/// any other file, is an error.
pub(super) async fn bind_unix(path: &Path) -> anyhow::Result<OwnerOnly> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                bail!("another process is serving on it (is a daemon already running?)");
            }
            fs::remove_file(path).context("removing the stale socket")?;
        }
        Ok(_) => bail!("the path exists and is not a socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("reading the path"),
    }
    let listener = UnixListener::bind(path).context("binding")?;
    // The data directory is the owner's alone (0700), so the socket is
    // never reachable by others even before this; the peer check below
    // holds in any case.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).context("setting mode 0600")?;
    let uid = fs::metadata(path)
        .context("reading the socket's owner")?
        .uid();
    Ok(OwnerOnly { listener, uid })
}

/// A Unix listener that serves only processes of the user that owns the
/// socket (the daemon's): the permissions already keep others out; the
/// peer credential check holds even if they are loosened by mistake.
pub struct OwnerOnly {
    listener: UnixListener,
    uid: u32,
}

impl axum::serve::Listener for OwnerOnly {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
            match io.peer_cred() {
                Ok(cred) if cred.uid() == self.uid => return (io, addr),
                Ok(cred) => {
                    tracing::warn!(uid = cred.uid(), "API connection from another user refused")
                }
                Err(e) => tracing::warn!("API connection refused: no peer credentials: {e}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
