//! `grove-node --config` with hostile files: each one ends the process at
//! once with a non-zero status and one line on stderr naming the file, the
//! line, the section and the key; never a panic, an abort or a backtrace
//! (even with `RUST_BACKTRACE=1`).

#![cfg(not(madsim))]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A process given a bad file must be gone within this.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// (file text, what stderr must contain after `<file>:`).
const BAD_FILES: &[(&str, &str)] = &[
    // Out of range, found by `Config::validate`.
    (
        "[gossipsub]\nenabled = true\nd = 0\n",
        "3: [gossipsub] d: must be 1 to 64, got 0",
    ),
    (
        "# views\n[hyparview]\nactive_view_capacity = 1000000000000\n",
        "3: [hyparview] active_view_capacity: must be 1 to 64, got 1000000000000",
    ),
    ("[dht]\nk = 0\n", "2: [dht] k: must be 1 to 20, got 0"),
    (
        "[plumtree]\nihave_delay = \"50ms\"\nseen_capacity = 0\n",
        "3: [plumtree] seen_capacity: must be 1 to 1048576, got 0",
    ),
    (
        "[nat]\nenabled = true\n\n[nat.relay]\nmax_circuits = 0\n",
        "5: [nat.relay] max_circuits: must be 1 to 65536, got 0",
    ),
    (
        "[transport]\nidle_timeout = \"1000h\"\n",
        "2: [transport] idle_timeout: must be 1ms to 720h, got 1000h",
    ),
    (
        "[knowledge]\nenabled = true\nmax_topics = 0\n",
        "3: [knowledge] max_topics: must be 1 to 64, got 0",
    ),
    // Refused while parsing.
    (
        "[hyparview]\nkeepalive_interval = 1e300\n",
        "2: [hyparview] keepalive_interval: 1e300 ms is more than 100 years",
    ),
    (
        "[gossipsub]\nheartbeat_interval = -1\n",
        "2: [gossipsub] heartbeat_interval: -1.0 ms is negative",
    ),
    (
        "[flood]\nseen_ttl = nan\n",
        "2: [flood] seen_ttl: NaN ms is not a number",
    ),
    (
        "[dht]\nenabled = true\nalpha = \"three\"\n",
        "3: [dht] alpha: invalid type: string \"three\"",
    ),
    (
        "[knowledge]\nbogus = 1\n",
        "2: [knowledge] bogus: unknown field `bogus`",
    ),
];

#[test]
fn bad_config_files_are_refused_with_line_section_and_key() {
    let dir = std::env::temp_dir().join(format!("grove-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (text, expected)) in BAD_FILES.iter().enumerate() {
        let path = dir.join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (status, stderr) = run(&path);
        assert!(!status.success(), "{text:?}: exit {status}");
        assert_eq!(status.code(), Some(1), "{text:?}: {stderr}");
        for sign in ["panicked", "backtrace", "memory allocation"] {
            assert!(!stderr.contains(sign), "{text:?}: {stderr}");
        }
        let line = format!("grove-node: {}:{expected}", path.display());
        assert!(
            stderr.starts_with(&line),
            "{text:?}:\n expected {line}\n got      {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run `grove-node --config path`; its exit status and stderr.
fn run(path: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grove-node"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(path)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > EXIT_TIMEOUT {
            child.kill().unwrap();
            panic!("grove-node --config {} did not exit", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status, stderr)
}
