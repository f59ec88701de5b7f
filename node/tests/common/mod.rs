//! What the daemon tests share: reading a `grove-node` process's output.
//! Its stdout lines arrive as JSON events on a channel, tagged with the
//! process index; the last lines of stderr (and, if asked, of stdout) are
//! kept for failure reports. [`Daemon`] is one process with its stdout
//! events on a channel of its own.
//!
//! Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::{mpsc, Arc, Mutex};

use serde_json::Value;

/// The last lines of a stream, at most `max`.
pub type Kept = Arc<Mutex<VecDeque<String>>>;

fn keep(lines: &Mutex<VecDeque<String>>, max: usize, line: String) {
    let mut lines = lines.lock().unwrap();
    if lines.len() == max {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// Read `stdout` on a thread: each line is sent as `(index, event)` (a line
/// that is not JSON as `{"event": "unparsable", "line": ...}`), and, with
/// `kept`, also kept (its last `max` lines).
pub fn read_events(
    stdout: impl Read + Send + 'static,
    index: usize,
    tx: mpsc::Sender<(usize, Value)>,
    kept: Option<(Kept, usize)>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some((kept, max)) = &kept {
                keep(kept, *max, line.clone());
            }
            let event = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({"event": "unparsable", "line": line}));
            if tx.send((index, event)).is_err() {
                return;
            }
        }
    });
}

/// Keep the last `max` lines of `stream`, read on a thread.
pub fn keep_lines(stream: impl Read + Send + 'static, max: usize) -> Kept {
    let kept: Kept = Arc::new(Mutex::new(VecDeque::new()));
    let lines = Arc::clone(&kept);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            keep(&lines, max, line);
        }
    });
    kept
}

/// A fresh directory for one test's daemons (their data directories and
/// key seed files), removed when dropped unless the test failed (then it
/// is left for a look, and named on stderr).
pub struct TestDir(std::path::PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "grove-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Give `command` (a `grove-node`) the data directory `node-NAME` in
    /// here, and the identity of key seed `[seed; 32]`: a seed file (mode
    /// 0600) named in `GROVE_KEY_SEED_FILE`, the way tests get a known
    /// identity without a secret on the command line. Returns the data
    /// directory.
    pub fn node(
        &self,
        command: &mut std::process::Command,
        name: &str,
        seed: u8,
    ) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let seed_file = self.0.join(format!("seed-{name}"));
        std::fs::write(&seed_file, format!("{seed:02x}").repeat(32)).unwrap();
        std::fs::set_permissions(&seed_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let data_dir = self.0.join(format!("node-{name}"));
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .env("GROVE_KEY_SEED_FILE", &seed_file);
        data_dir
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One `grove-node` process whose stdout events arrive on its own channel
/// (disconnected once the process's stdout is closed: every line it wrote
/// has then been received). Killed when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub stdin: Option<std::process::ChildStdin>,
    pub events: mpsc::Receiver<(usize, Value)>,
    pub stderr: Kept,
    /// Every event received so far.
    pub log: Vec<Value>,
}

impl Daemon {
    /// Start `command` (a `grove-node`) with piped stdio.
    pub fn spawn(command: &mut std::process::Command) -> Daemon {
        use std::process::Stdio;
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting grove-node");
        let (tx, events) = mpsc::channel();
        read_events(child.stdout.take().unwrap(), 0, tx, None);
        let stderr = keep_lines(child.stderr.take().unwrap(), 200);
        Daemon {
            stdin: child.stdin.take(),
            child,
            events,
            stderr,
            log: Vec::new(),
        }
    }

    /// Write `line` to stdin.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The first event (from the start) that `pred` accepts, waiting at
    /// most `timeout` for it; `None` on time out or once stdout closed.
    pub fn wait_for(
        &mut self,
        timeout: std::time::Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if self.wait_until(timeout, |log| log.iter().any(&pred)) {
            self.log.iter().find(|e| pred(e)).cloned()
        } else {
            None
        }
    }

    /// Wait at most `timeout` for the events so far to satisfy `done`;
    /// whether they do.
    pub fn wait_until(
        &mut self,
        timeout: std::time::Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if done(&self.log) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok((_, e)) => self.log.push(e),
                Err(_) => return false,
            }
        }
    }

    /// Kill the process (SIGKILL), and take every line it wrote.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok((_, e)) = self.events.recv() {
            self.log.push(e);
        }
    }

    /// The last lines of stderr, for failure messages.
    pub fn stderr_text(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
