//! The data directory: where it is, creating it, and the identity key in
//! it.
//!
//! Every error names the path it is about and says what is wrong with it
//! in one line; none of them ever shows a byte of a key.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;
use zeroize::Zeroizing;

use super::RedbStore;
use crate::store::StoreError;
use crate::Identity;

/// Overrides the default data directory (`--data-dir` overrides it).
pub const DATA_DIR_ENV: &str = "GROVE_DATA_DIR";
/// Names a file holding a key seed (64 hex digits) for a deterministic
/// identity (tests): it creates `identity.key` when there is none, and must
/// agree with the one there is.
pub const KEY_SEED_FILE_ENV: &str = "GROVE_KEY_SEED_FILE";
/// The identity key's file in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";
/// The store's file in the data directory.
pub const STORE_FILE: &str = "store.redb";

/// The longest key file read: 64 hex digits and some white space. A larger
/// file is not a key, and is not read whole into memory.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// A data directory (or a key file) that cannot be used: one line naming
/// the path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DataDirError(pub String);

impl DataDirError {
    fn at(path: &Path, what: impl std::fmt::Display) -> Self {
        DataDirError(format!("{}: {what}", path.display()))
    }
}

/// Where the data directory is: `arg` (`--data-dir`), else
/// `$GROVE_DATA_DIR`, else `$XDG_DATA_HOME/grove`, else
/// `$HOME/.local/share/grove`. `env` reads a variable (the process's
/// environment, or a test's); an empty variable counts as unset, and so
/// does a relative `XDG_DATA_HOME` (the XDG specification says to ignore
/// it).
///
/// # Errors
///
/// None of these is set.
pub fn resolve(
    arg: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, DataDirError> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(path) = arg {
        if path.as_os_str().is_empty() {
            return Err(DataDirError("--data-dir: an empty path".into()));
        }
        return Ok(path.to_path_buf());
    }
    if let Some(path) = var(DATA_DIR_ENV) {
        return Ok(path);
    }
    if let Some(xdg) = var("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("grove"));
    }
    match var("HOME") {
        Some(home) => Ok(home.join(".local/share/grove")),
        None => Err(DataDirError(format!(
            "no data directory: give --data-dir DIR (or set {DATA_DIR_ENV}; \
             neither XDG_DATA_HOME nor HOME is set)"
        ))),
    }
}

/// An open data directory: it exists, is a directory and is writable.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Open the data directory at `path`, creating it (and its missing
    /// parents) with mode 0700 when it does not exist.
    ///
    /// # Errors
    ///
    /// `path` is not a directory, cannot be created, or is not writable.
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let dir_error = |what: String| DataDirError(format!("data directory {what}"));
        let mut open_mode = None;
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => open_mode = Some(m.permissions().mode() & 0o777),
            Ok(_) => return Err(dir_error(format!("{}: not a directory", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| dir_error(format!("{}: cannot create it: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "created the data directory");
            }
            Err(e) => return Err(dir_error(format!("{}: {e}", path.display()))),
        }
        // Writing a file (and removing it) finds out now, with a message
        // about the directory, what would otherwise fail later with one
        // about the identity key or the store.
        let probe = path.join(format!(".grove-probe-{}", std::process::id()));
        let _ = fs::remove_file(&probe);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .and_then(|_| fs::remove_file(&probe))
            .map_err(|e| dir_error(format!("{}: not writable: {e}", path.display())))?;
        if let Some(mode) = open_mode.filter(|m| m & 0o077 != 0) {
            // The key is refused from a file others may read; the
            // directory (and so the store's documents) is only warned
            // about.
            tracing::warn!(
                path = %path.display(),
                "the data directory is open to group or others (mode {mode:04o}); chmod 700 it"
            );
        }
        Ok(DataDir {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity_path(&self) -> PathBuf {
        self.path.join(IDENTITY_FILE)
    }

    pub fn store_path(&self) -> PathBuf {
        self.path.join(STORE_FILE)
    }

    /// The node's identity: the key in `identity.key`, created when the
    /// file does not exist, from the key seed in `seed_file` if one is
    /// given, else from OS entropy.
    ///
    /// # Errors
    ///
    /// A key file that cannot be read, is not 64 hex digits, may be read by
    /// group or others, or (with `seed_file`) holds another key than
    /// `identity.key`. Never a fresh identity in place of one that could
    /// not be read: peers and stored documents know the node by it.
    pub fn identity(&self, seed_file: Option<&Path>) -> Result<Identity, DataDirError> {
        let path = self.identity_path();
        let given = seed_file.map(read_key_file).transpose()?;
        let kept = match read_key_file(&path) {
            Ok(seed) => Some(seed),
            Err(_) if !exists(&path) => None,
            Err(e) => return Err(e),
        };
        let seed = match (kept, given) {
            (Some(kept), Some(given)) if kept != given => {
                return Err(DataDirError::at(
                    &path,
                    format_args!(
                        "holds another key than {} ({KEY_SEED_FILE_ENV}); \
                         remove one of them",
                        seed_file.expect("given").display()
                    ),
                ));
            }
            (Some(kept), _) => kept,
            (None, given) => {
                let seed = given.unwrap_or_else(os_seed);
                write_key_file(&self.path, &path, &seed)?;
                tracing::info!(path = %path.display(), "created the node's identity key");
                seed
            }
        };
        Ok(Identity::from_seed(*seed))
    }

    /// The store in `store.redb`, created when missing.
    ///
    /// # Errors
    ///
    /// See [`RedbStore::open`].
    pub fn open_store(&self) -> Result<RedbStore, StoreError> {
        RedbStore::open(&self.store_path())
    }
}

/// Whether anything is at `path` (a dangling symbolic link counts).
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// 32 bytes of OS entropy. Real mode only: this module is declared under
/// `#[cfg(not(madsim))]`; the simulator derives every key from its seed.
fn os_seed() -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut seed[..]);
    seed
}

/// The key seed in the file at `path`, which only its owner may read.
fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, DataDirError> {
    let err = |what: String| DataDirError::at(path, what);
    let mut file = File::open(path).map_err(|e| err(format!("cannot read the key: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot read the key: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a key file (not a regular file)".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "group or others may access this secret key (mode {mode:04o}); \
             make it private with `chmod 600 {}`",
            path.display()
        )));
    }
    let mut text = Zeroizing::new(Vec::new());
    (&mut file)
        .take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(|e| err(format!("cannot read the key: {e}")))?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(err(format!(
            "not a key file (over {MAX_KEY_FILE_BYTES} bytes; expected 64 hex digits)"
        )));
    }
    let digits = std::str::from_utf8(&text)
        .map_err(|_| err("not a key file (not text; expected 64 hex digits)".into()))?;
    parse_hex_seed(digits.trim())
        .map(Zeroizing::new)
        .map_err(|e| err(format!("not a key file ({e})")))
}

/// Write `seed` to `path` (in `dir`), readable only by its owner, all or
/// nothing: to a temporary file first, made durable, then renamed (a
/// crash leaves either no key file or the whole one).
fn write_key_file(dir: &Path, path: &Path, seed: &[u8; 32]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("key.tmp");
    let err =
        |what: io::Error| DataDirError::at(path, format_args!("cannot create the key: {what}"));
    // A temporary file left by a crash while writing was never the key.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let text = Zeroizing::new(format!("{}\n", hex(seed)));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

/// A key seed from 64 hex digits.
///
/// # Errors
///
/// Not 64 hex digits; the message never quotes them.
pub fn parse_hex_seed(text: &str) -> Result<[u8; 32], String> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return Err(format!(
            "{} characters, expected 64 hex digits",
            digits.len()
        ));
    }
    let mut seed = [0u8; 32];
    for (byte, pair) in seed.iter_mut().zip(digits.chunks_exact(2)) {
        let value = |d: u8| (d as char).to_digit(16);
        match (value(pair[0]), value(pair[1])) {
            (Some(hi), Some(lo)) => *byte = (hi * 16 + lo) as u8,
            _ => return Err("not hex digits, expected 64 hex digits".into()),
        }
    }
    Ok(seed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::TempDir;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_data_directory_is_the_flag_then_grove_then_xdg_then_home() {
        let all = [
            ("GROVE_DATA_DIR", "/g"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let flag = Path::new("/flag");
        assert_eq!(resolve(Some(flag), env(&all)).unwrap(), flag);
        assert_eq!(resolve(None, env(&all)).unwrap(), Path::new("/g"));
        assert_eq!(
            resolve(None, env(&all[1..])).unwrap(),
            Path::new("/x/grove")
        );
        assert_eq!(
            resolve(None, env(&all[2..])).unwrap(),
            Path::new("/h/.local/share/grove")
        );
        // Empty variables and a relative XDG_DATA_HOME are ignored.
        let odd = [
            ("GROVE_DATA_DIR", ""),
            ("XDG_DATA_HOME", "rel"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            resolve(None, env(&odd)).unwrap(),
            Path::new("/h/.local/share/grove")
        );
        let e = resolve(None, env(&[])).unwrap_err();
        assert!(e.0.contains("--data-dir"), "{e}");
        let e = resolve(Some(Path::new("")), env(&all)).unwrap_err();
        assert_eq!(e.0, "--data-dir: an empty path");
    }

    #[test]
    fn a_missing_directory_is_created_private_and_a_file_is_refused() {
        let tmp = TempDir::new("datadir-create");
        let dir = tmp.0.join("a/b");
        let d = DataDir::open(&dir).unwrap();
        let mode = fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "the probe is gone");
        let file = tmp.0.join("file");
        fs::write(&file, b"x").unwrap();
        let e = DataDir::open(&file).unwrap_err().0;
        assert_eq!(
            e,
            format!("data directory {}: not a directory", file.display())
        );
        let below = file.join("below");
        let e = DataDir::open(&below).unwrap_err().0;
        assert_eq!(
            e,
            format!(
                "data directory {}: Not a directory (os error 20)",
                below.display()
            )
        );
        let e = DataDir::open(Path::new("/proc/self")).unwrap_err().0;
        assert!(
            e.starts_with("data directory /proc/self: not writable: "),
            "{e}"
        );
    }

    #[test]
    fn the_identity_is_created_once_private_and_then_kept() {
        let tmp = TempDir::new("datadir-identity");
        let d = DataDir::open(&tmp.0).unwrap();
        let first = d.identity(None).unwrap().peer_id();
        let mode = fs::metadata(d.identity_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(d.identity(None).unwrap().peer_id(), first);
        let text = fs::read_to_string(d.identity_path()).unwrap();
        assert_eq!(text.len(), 65);
        // Another directory gets another key.
        let other = TempDir::new("datadir-identity-other");
        let o = DataDir::open(&other.0).unwrap();
        assert_ne!(o.identity(None).unwrap().peer_id(), first);
    }

    #[test]
    fn a_seed_file_creates_the_identity_and_must_agree_with_it() {
        let tmp = TempDir::new("datadir-seed");
        let d = DataDir::open(&tmp.0.join("data")).unwrap();
        let seed_file = tmp.0.join("seed");
        let write_seed = |byte: &str| {
            fs::write(&seed_file, format!("{}\n", byte.repeat(32))).unwrap();
            fs::set_permissions(&seed_file, fs::Permissions::from_mode(0o600)).unwrap();
        };
        write_seed("07");
        let id = d.identity(Some(&seed_file)).unwrap();
        assert_eq!(id.peer_id(), Identity::from_seed([7; 32]).peer_id());
        // Kept: without the seed file too.
        assert_eq!(d.identity(None).unwrap().peer_id(), id.peer_id());
        write_seed("08");
        let e = d.identity(Some(&seed_file)).unwrap_err().0;
        assert!(
            e.starts_with(&d.identity_path().display().to_string()),
            "{e}"
        );
        assert!(e.contains("another key"), "{e}");
    }

    #[test]
    fn a_bad_key_file_is_an_error_naming_it_never_a_fresh_identity() {
        let tmp = TempDir::new("datadir-badkey");
        let d = DataDir::open(&tmp.0).unwrap();
        let path = d.identity_path();
        let secret = "ab".repeat(32);
        let cases: [(&[u8], u32, &str); 5] = [
            (secret.as_bytes(), 0o644, "group or others may access"),
            (secret.as_bytes(), 0o640, "group or others may access"),
            (b"0123", 0o600, "not a key file (4 characters"),
            (&[0xff; 64], 0o600, "not a key file (not text"),
            (&[b'a'; 2000], 0o600, "not a key file (over 1024 bytes"),
        ];
        for (content, mode, expected) in cases {
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let e = d.identity(None).unwrap_err().0;
            assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
            assert!(e.contains(expected), "{expected:?} in {e}");
            assert!(!e.contains(&secret), "the key leaked: {e}");
            // Still there, untouched.
            assert_eq!(fs::read(&path).unwrap(), content);
        }
        // A directory where the key should be.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let e = d.identity(None).unwrap_err().0;
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
    }

    #[test]
    fn hex_seeds_are_64_hex_digits() {
        assert_eq!(parse_hex_seed(&"0a".repeat(32)).unwrap(), [10; 32]);
        assert_eq!(parse_hex_seed(&"AB".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_hex_seed("0a").is_err());
        assert!(parse_hex_seed(&"zz".repeat(32)).is_err());
        assert!(parse_hex_seed(&"+1".repeat(32)).is_err());
        assert!(parse_hex_seed(&"é".repeat(32)).is_err());
    }
}
