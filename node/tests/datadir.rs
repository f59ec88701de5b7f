//! `grove-node --data-dir`: what a node keeps across restarts, and what it
//! refuses to start on.
//!
//! - Node B joins the overlay through node A (`--bootstrap`), is killed,
//!   and restarts without `--bootstrap`: it has the same identity, and
//!   rejoins A through its peer cache. A second daemon on B's data
//!   directory while B runs is refused.
//! - A data directory that is a file, below a file or not writable, a key
//!   file that others may read, that is not a key, or that disagrees with
//!   `GROVE_KEY_SEED_FILE`, and a store that is not a Grove store each end
//!   the process at once with exit status 1 and one line on stderr naming
//!   the path; nothing in the directory is replaced.
//!
//! All traffic stays on 127.0.0.1.

#![cfg(not(madsim))]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grove_node::Identity;

/// Bound on every wait.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// Timers a few times faster than the defaults, so the test is quick.
const FAST_CONFIG: &str = r#"
[hyparview]
keepalive_interval = "200ms"
failure_timeout = "600ms"
shuffle_interval = "1s"
request_timeout = "300ms"

[rejoin]
retry = "500ms"
"#;

fn grove_node(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_grove-node"));
    c.args(["--listen", "127.0.0.1:0", "--config"]).arg(config);
    c
}

/// The peer id and address of a `listening` line.
fn listening(node: &mut common::Daemon, name: &str) -> (String, String) {
    let e = node
        .wait_for(STEP_TIMEOUT, |e| e["event"] == "listening")
        .unwrap_or_else(|| panic!("{name} did not start:\n{}", node.stderr_text()));
    (
        e["peer"].as_str().unwrap().to_owned(),
        e["addr"].as_str().unwrap().to_owned(),
    )
}

fn wait_neighbor(node: &mut common::Daemon, name: &str, peer: &str) {
    let up = node.wait_for(STEP_TIMEOUT, |e| {
        e["event"] == "neighbor_up" && e["peer"] == peer
    });
    assert!(
        up.is_some(),
        "{name} never had {peer} as a neighbour:\n{}",
        node.stderr_text()
    );
}

#[test]
fn a_restarted_node_keeps_its_identity_and_rejoins_through_its_peer_cache() {
    let started = Instant::now();
    let dir = common::TestDir::new("datadir-rejoin");
    let config = dir.path().join("fast.toml");
    std::fs::write(&config, FAST_CONFIG).unwrap();
    // A's identity from a seed file; B's created on its first start.
    let mut a = grove_node(&config);
    let a_dir = dir.node(&mut a, "a", 0x0a);
    let mut a = common::Daemon::spawn(&mut a);
    let (a_peer, a_addr) = listening(&mut a, "A");
    assert_eq!(
        a_peer,
        Identity::from_seed([0x0a; 32]).peer_id().to_string(),
        "A's identity is not the one of its seed file"
    );
    let key_mode = std::fs::metadata(a_dir.join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let b_dir = dir.path().join("node-b");
    let start_b = |bootstrap: Option<&str>| {
        let mut b = grove_node(&config);
        b.arg("--data-dir").arg(&b_dir);
        if let Some(contact) = bootstrap {
            b.args(["--bootstrap", contact]);
        }
        common::Daemon::spawn(&mut b)
    };
    let mut b = start_b(Some(&a_addr));
    let (b_peer, _) = listening(&mut b, "B");
    wait_neighbor(&mut b, "B", &a_peer);

    // Another daemon on B's data directory is refused while B runs.
    let (code, stderr) = run_to_exit(grove_node(&config).arg("--data-dir").arg(&b_dir));
    assert_eq!(code, Some(1), "{stderr}");
    let store = b_dir.join("store.redb");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "grove-node: {}: in use by another process (is another grove-node running \
             on this data directory?)",
            store.display()
        )
    );

    // The cache is saved when it changes; give the save a moment, then
    // crash B.
    std::thread::sleep(Duration::from_millis(300));
    b.kill();
    let mut b = start_b(None);
    let (again, _) = listening(&mut b, "B restarted");
    assert_eq!(again, b_peer, "B's identity changed across the restart");
    wait_neighbor(&mut b, "B restarted without --bootstrap", &a_peer);
    eprintln!(
        "B rejoined A through its peer cache after {:?}",
        started.elapsed()
    );
}

#[test]
fn bad_data_directories_are_refused_naming_the_path() {
    let dir = common::TestDir::new("datadir-bad");
    let root = dir.path();
    let config = root.join("fast.toml");
    std::fs::write(&config, FAST_CONFIG).unwrap();
    let refused = |data_dir: &Path, seed_file: Option<&Path>, expected: &str| {
        let mut c = grove_node(&config);
        c.arg("--data-dir").arg(data_dir);
        if let Some(f) = seed_file {
            c.env("GROVE_KEY_SEED_FILE", f);
        }
        let (code, stderr) = run_to_exit(&mut c);
        assert_eq!(code, Some(1), "{expected}: {stderr}");
        assert!(
            stderr.starts_with(&format!("grove-node: {expected}")),
            "expected grove-node: {expected}\ngot {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        for sign in ["panicked", "backtrace"] {
            assert!(!stderr.contains(sign), "{stderr}");
        }
    };

    let file = root.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    refused(
        &file,
        None,
        &format!("data directory {}: not a directory", file.display()),
    );
    let below = file.join("data");
    refused(
        &below,
        None,
        &format!("data directory {}: Not a directory", below.display()),
    );
    refused(
        Path::new("/proc/self"),
        None,
        "data directory /proc/self: not writable: ",
    );

    // Key files.
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data.join("identity.key");
    let secret = "5e".repeat(32);
    std::fs::write(&key, &secret).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &data,
        None,
        &format!(
            "{}: group or others may access this secret key (mode 0644)",
            key.display()
        ),
    );
    std::fs::write(&key, "a line that is not a key\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(
        &data,
        None,
        &format!("{}: not a key file (24 characters", key.display()),
    );
    assert_eq!(
        std::fs::read_to_string(&key).unwrap(),
        "a line that is not a key\n",
        "the bad key was replaced"
    );
    std::fs::write(&key, &secret).unwrap();
    let missing = root.join("no-such-seed");
    refused(
        &data,
        Some(&missing),
        &format!("{}: cannot read the key: ", missing.display()),
    );
    let other_seed = root.join("other-seed");
    std::fs::write(&other_seed, "a0".repeat(32)).unwrap();
    std::fs::set_permissions(&other_seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(
        &data,
        Some(&other_seed),
        &format!(
            "{}: holds another key than {} (GROVE_KEY_SEED_FILE)",
            key.display(),
            other_seed.display()
        ),
    );

    // A store that is not one.
    let store = data.join("store.redb");
    std::fs::write(&store, "SQLite format 3\0 and then some").unwrap();
    refused(
        &data,
        None,
        &format!("{}: not a Grove store", store.display()),
    );
    assert!(std::fs::read(&store)
        .unwrap()
        .starts_with(b"SQLite format 3"));

    // With the key and the store in order, the same directory starts.
    std::fs::remove_file(&store).unwrap();
    let mut node = common::Daemon::spawn(grove_node(&config).arg("--data-dir").arg(&data));
    let (peer, _) = listening(&mut node, "the repaired node");
    let want = Identity::from_seed([0x5e; 32]).peer_id().to_string();
    assert_eq!(peer, want);
}

/// Run `command` until it exits (at most [`STEP_TIMEOUT`]): its exit code
/// and stderr.
fn run_to_exit(command: &mut Command) -> (Option<i32>, String) {
    let out = command
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting grove-node");
    let started = Instant::now();
    let mut child = out;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > STEP_TIMEOUT {
            let _ = child.kill();
            panic!("grove-node did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
