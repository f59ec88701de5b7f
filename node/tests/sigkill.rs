//! A `grove-node` with a data directory takes a stream of knowledge writes
//! on stdin and is killed with SIGKILL at random moments, 50 times over.
//! After each restart, every write it acknowledged (a `knowledge_written`
//! line on stdout) before it was killed is in its document.
//!
//! Writes are answered in the order they are sent, one line each
//! (`knowledge_written`, or `error` when one could not be made durable,
//! which fails the test), so the n-th acknowledgement of a life is its
//! n-th write. A write that was made durable but not yet acknowledged when
//! the kill came may or may not be there; an acknowledged one must be.
//!
//! The store starts with [`PRELOADED`] writes (put there through the
//! library, as a node would have), so that kills land while the store
//! merges the topic's history (once it holds [`COMPACT_AFTER`] updates; a
//! merge takes longer than most lives in a debug build). Life
//! [`LONG_LIFE`] is killed only after [`LONG_LIFE_ACKS`] acknowledgements,
//! so that one merge completes, and the later lives run on a merged
//! history.
//!
//! Every seventh life is killed while it starts instead (opening,
//! checking or repairing the store, restoring the document); the next life
//! checks that nothing was lost by that either.
//!
//! The kill moments come from a seeded stream (`GROVE_SIGKILL_SEED`
//! overrides the seed; the failure message names it). All traffic stays on
//! 127.0.0.1, and the node is alone.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use grove_node::daemon::redb_store::COMPACT_AFTER;
use grove_node::daemon::RedbStore;
use grove_node::store::Store;
use loro::{ExportMode, LoroDoc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

const LIVES: usize = 50;
/// How long a life writes before its kill: short, so that kills land in
/// every phase (the first writes, a merge, a steady stream) and the whole
/// test stays fast.
const WRITE_TIME_MS: std::ops::RangeInclusive<u64> = 1..=80;
/// Every `STARTUP_KILL_EVERY`-th life is killed while it starts, after
/// `STARTUP_KILL_MS`.
const STARTUP_KILL_EVERY: usize = 7;
const STARTUP_KILL_MS: std::ops::RangeInclusive<u64> = 0..=30;
/// Writes queued on stdin per life (more than a life can commit).
const WRITES_PER_LIFE: usize = 2000;
/// The life that is killed only once it acknowledged `LONG_LIFE_ACKS`
/// writes.
const LONG_LIFE: usize = 10;
const LONG_LIFE_ACKS: usize = 20;
/// Bound on each wait (the node's start, a read).
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
const TOPIC: &str = "journal";
/// Writes in the store before the first life: a few short of a
/// compaction.
const PRELOADED: u64 = COMPACT_AFTER - 10;

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let seed: u64 = std::env::var("GROVE_SIGKILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(18);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let dir = common::TestDir::new("sigkill");
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    preload(&data_dir.join("store.redb"));
    let mut acked: BTreeSet<u64> = (0..PRELOADED).collect();
    let mut next_write: u64 = PRELOADED;
    let mut peer_id: Option<String> = None;
    let mut survived_unacked = 0usize;
    let mut acked_per_life = Vec::new();
    for life in 0..LIVES {
        let context = format!("life {life} of {LIVES} (GROVE_SIGKILL_SEED={seed})");
        let mut node = common::Daemon::spawn(
            Command::new(env!("CARGO_BIN_EXE_grove-node"))
                .args(["--listen", "127.0.0.1:0", "--topic", TOPIC])
                .arg("--data-dir")
                .arg(&data_dir),
        );
        if life % STARTUP_KILL_EVERY == STARTUP_KILL_EVERY - 1 {
            // Killed while it starts: opening the store (checking it, and
            // after a crash repairing it, which commits) or restoring.
            std::thread::sleep(Duration::from_millis(rng.gen_range(STARTUP_KILL_MS)));
            node.kill();
            acked_per_life.push(0);
            continue;
        }
        let listening = node
            .wait_for(STEP_TIMEOUT, |e| e["event"] == "listening")
            .unwrap_or_else(|| panic!("{context}: no listening line\n{}", node.stderr_text()));
        // The same identity in every life.
        let peer = listening["peer"].as_str().unwrap().to_owned();
        assert_eq!(*peer_id.get_or_insert(peer.clone()), peer, "{context}");

        // Every write acknowledged in an earlier life is here.
        node.send(&format!(r#"{{"cmd":"read","topic":"{TOPIC}"}}"#));
        let doc = node
            .wait_for(STEP_TIMEOUT, |e| e["event"] == "knowledge_document")
            .unwrap_or_else(|| panic!("{context}: no document\n{}", node.stderr_text()));
        let held = items(&doc["json"]);
        let lost: Vec<&u64> = acked.difference(&held).collect();
        assert!(
            lost.is_empty(),
            "{context}: {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        survived_unacked += held.len() - acked.len();
        acked = held;

        // A stream of writes, killed after a random while.
        let first = next_write;
        let lines: String = (first..first + WRITES_PER_LIFE as u64)
            .map(|n| {
                format!(
                    r#"{{"cmd":"write","topic":"{TOPIC}","write":{{"op":"set_add","name":"acked","item":"w{n}"}}}}"#
                ) + "\n"
            })
            .collect();
        next_write += WRITES_PER_LIFE as u64;
        let mut stdin = node.stdin.take().unwrap();
        // Written from a thread: the pipe holds fewer lines than are sent,
        // and the write ends (broken pipe) when the process is killed.
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(lines.as_bytes());
        });
        let write_time = Duration::from_millis(rng.gen_range(WRITE_TIME_MS));
        if life == LONG_LIFE {
            let enough = node.wait_until(STEP_TIMEOUT, |log| {
                log.iter()
                    .filter(|e| e["event"] == "knowledge_written")
                    .count()
                    >= LONG_LIFE_ACKS
            });
            assert!(
                enough,
                "{context}: fewer than {LONG_LIFE_ACKS} writes acknowledged\n{}",
                node.stderr_text()
            );
        } else {
            std::thread::sleep(write_time);
        }
        node.kill();
        writer.join().unwrap();

        let errors: Vec<&Value> = node.log.iter().filter(|e| e["event"] == "error").collect();
        assert!(errors.is_empty(), "{context}: {errors:?}");
        let acks = node
            .log
            .iter()
            .filter(|e| e["event"] == "knowledge_written")
            .count() as u64;
        acked.extend(first..first + acks);
        acked_per_life.push(acks);
    }
    // The last life's acknowledged writes, read by one more life.
    let mut node = common::Daemon::spawn(
        Command::new(env!("CARGO_BIN_EXE_grove-node"))
            .args(["--listen", "127.0.0.1:0", "--topic", TOPIC])
            .arg("--data-dir")
            .arg(&data_dir),
    );
    node.send(&format!(r#"{{"cmd":"read","topic":"{TOPIC}"}}"#));
    let doc = node
        .wait_for(STEP_TIMEOUT, |e| e["event"] == "knowledge_document")
        .unwrap_or_else(|| panic!("last read: no document\n{}", node.stderr_text()));
    let held = items(&doc["json"]);
    let lost = acked.difference(&held).count();
    assert_eq!(lost, 0, "acknowledged writes lost after the last kill");
    node.kill();
    // The history was merged on the way.
    let stored = RedbStore::open(&data_dir.join("store.redb"))
        .unwrap()
        .load()
        .unwrap();
    let kept = stored.documents[0].updates.len() as u64;
    assert!(
        kept < held.len() as u64 && kept <= COMPACT_AFTER,
        "{kept} updates stored for {} writes",
        held.len()
    );
    let total: u64 = acked_per_life.iter().sum();
    let writing = acked_per_life.iter().filter(|&&n| n > 0).count();
    eprintln!(
        "{LIVES} kills (seed {seed}): {total} writes acknowledged (per life {}..={}, \
         {writing} lives acknowledged some), all kept; {survived_unacked} durable but \
         unacknowledged at a kill; {kept} updates stored for {} writes; {:?}",
        acked_per_life.iter().min().unwrap(),
        acked_per_life.iter().max().unwrap(),
        held.len(),
        started.elapsed()
    );
    // Kills landed while writes were being acknowledged, not only before.
    assert!(
        writing >= LIVES / 5,
        "too few lives acknowledged a write: {acked_per_life:?}"
    );
}

/// The write numbers in a document's `acked` set (`set:acked`: item →
/// true).
fn items(doc: &Value) -> BTreeSet<u64> {
    let Some(set) = doc.get("set:acked").and_then(Value::as_object) else {
        return BTreeSet::new();
    };
    set.keys()
        .map(|k| {
            k.strip_prefix('w')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("an item that was never written: {k}"))
        })
        .collect()
}

/// Writes 0 to [`PRELOADED`] as a node of an earlier life would have stored
/// them: one update per write, in commit order (in one transaction, which
/// is quicker than one each).
fn preload(store: &std::path::Path) {
    let mut store = RedbStore::open(store).unwrap();
    let doc = LoroDoc::new();
    doc.set_peer_id(1).unwrap();
    let set = doc.get_map("set:acked");
    let mut updates = Vec::new();
    for n in 0..PRELOADED {
        let before = doc.oplog_vv();
        set.insert(&format!("w{n}"), true).unwrap();
        doc.commit();
        let update = doc.export(ExportMode::updates(&before)).unwrap();
        updates.push((TOPIC.into(), Bytes::from(update)));
    }
    store.append(&updates).unwrap();
}
