//! What the daemon tests share: reading a `grove-node` process's output.
//! Its stdout lines arrive as JSON events on a channel, tagged with the
//! process index; the last lines of stderr (and, if asked, of stdout) are
//! kept for failure reports.

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
