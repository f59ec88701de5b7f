use std::fs;

use loro::{ExportMode, LoroDoc, ToJson};
use proptest::prelude::*;

use super::*;
use crate::daemon::TempDir;

fn peer(n: u8, addr: &str, relay: Option<&str>) -> Peer {
    Peer {
        id: PeerId([n; 32]),
        addr: addr.parse().unwrap(),
        relay: relay.map(|r| r.parse().unwrap()),
    }
}

fn update(s: &str) -> (String, Bytes) {
    let (topic, data) = s.split_once(':').unwrap();
    (topic.to_owned(), Bytes::copy_from_slice(data.as_bytes()))
}

/// (topic, updates as text) of what `store` loads.
fn docs(store: &mut RedbStore) -> Vec<(String, Vec<String>)> {
    store
        .load()
        .unwrap()
        .documents
        .into_iter()
        .map(|d| {
            let updates = d
                .updates
                .iter()
                .map(|u| String::from_utf8(u.to_vec()).unwrap())
                .collect();
            (d.topic, updates)
        })
        .collect()
}

#[test]
fn updates_and_the_peer_cache_survive_reopening() {
    let dir = TempDir::new("redb-roundtrip");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    let peers = [
        peer(1, "10.0.0.1:7000", None),
        peer(2, "[2001:db8::2]:7001", Some("192.0.2.9:7002")),
    ];
    {
        let mut s = RedbStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), Stored::default());
        s.append(&[update("b:1")]).unwrap();
        s.append(&[update("a:2"), update("b:3"), update("a:4")])
            .unwrap();
        s.save_peers(&[peers[1], peers[0], peers[1]]).unwrap();
        s.save_peers(&peers).unwrap();
    }
    let mut s = RedbStore::open(&path).unwrap();
    let want = vec![
        ("a".to_owned(), vec!["2".to_owned(), "4".to_owned()]),
        ("b".to_owned(), vec!["1".to_owned(), "3".to_owned()]),
    ];
    assert_eq!(docs(&mut s), want);
    assert_eq!(s.load().unwrap().peers, peers);
    s.save_peers(&[]).unwrap();
    assert_eq!(s.load().unwrap().peers, []);
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let dir = TempDir::new("redb-locked");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    let _first = RedbStore::open(&path).unwrap();
    let e = RedbStore::open(&path).unwrap_err().0;
    assert!(e.starts_with(&format!("{}: in use", path.display())), "{e}");
}

#[test]
fn files_that_are_not_grove_stores_are_refused_naming_the_file() {
    let dir = TempDir::new("redb-foreign");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    let check = |content: &[u8], expected: &str| {
        fs::write(&path, content).unwrap();
        let e = RedbStore::open(&path).unwrap_err().0;
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        assert!(e.contains(expected), "{expected:?} in {e}");
        // Left as it was: never replaced by a fresh store.
        assert_eq!(fs::read(&path).unwrap(), content);
    };
    check(b"hello, I am a text file\n", "not a Grove store");
    check(&[0u8; 8192], "not a Grove store");
    check(&[0xa5; 100_000], "not a Grove store");

    // A redb database of someone else's (no schema version).
    fs::remove_file(&path).unwrap();
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let other: TableDefinition<u64, u64> = TableDefinition::new("other");
        txn.open_table(other).unwrap().insert(1, 2).unwrap();
        txn.commit().unwrap();
    }
    let e = RedbStore::open(&path).unwrap_err().0;
    assert_eq!(
        e,
        format!(
            "{}: not a Grove store: no schema version (tables: other)",
            path.display()
        )
    );

    // A Grove store of another schema version.
    fs::remove_file(&path).unwrap();
    drop(RedbStore::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META).unwrap().insert(SCHEMA_KEY, 2).unwrap();
        txn.commit().unwrap();
    }
    let e = RedbStore::open(&path).unwrap_err().0;
    assert_eq!(
        e,
        format!(
            "{}: schema version 2; this grove-node reads version 1",
            path.display()
        )
    );
}

#[test]
fn a_damaged_store_is_an_error_not_a_panic() {
    let dir = TempDir::new("redb-damaged");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    {
        let mut s = RedbStore::open(&path).unwrap();
        for i in 0..200 {
            s.append(&[(format!("t{}", i % 3), Bytes::from(vec![i as u8; 300]))])
                .unwrap();
        }
        s.save_peers(&[peer(1, "10.0.0.1:7000", None)]).unwrap();
    }
    let pristine = fs::read(&path).unwrap();
    let mut refused = 0;
    // Overwrite 64 bytes at a spread of offsets past the header: every
    // page is checksummed, so each damage that hits live data is found.
    for offset in (4096..pristine.len()).step_by(pristine.len() / 40) {
        let mut bytes = pristine.clone();
        for b in &mut bytes[offset..(offset + 64).min(pristine.len())] {
            *b ^= 0x5a;
        }
        fs::write(&path, &bytes).unwrap();
        match RedbStore::open(&path).and_then(|mut s| s.load()) {
            Ok(stored) => {
                // Damage to a free page: what was stored is intact.
                assert_eq!(stored.documents.len(), 3);
                assert_eq!(stored.peers.len(), 1);
            }
            Err(e) => {
                assert!(e.0.starts_with(&format!("{}: ", path.display())), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no damage was noticed");
}

#[test]
fn a_corrupt_peer_record_names_the_table_and_key() {
    let dir = TempDir::new("redb-badpeer");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    {
        let mut s = RedbStore::open(&path).unwrap();
        s.save_peers(&[
            peer(1, "10.0.0.1:7000", None),
            peer(2, "10.0.0.2:7000", None),
        ])
        .unwrap();
        let txn = s.db.begin_write().unwrap();
        txn.open_table(PEERS)
            .unwrap()
            .insert(1, &[1u8, 2, 3][..])
            .unwrap();
        txn.commit().unwrap();
    }
    let e = RedbStore::open(&path).unwrap().load().unwrap_err().0;
    assert_eq!(
        e,
        format!(
            "{}: table peers, key 1: truncated in the peer id",
            path.display()
        )
    );
}

#[test]
fn peer_records_round_trip_and_refuse_every_damage() {
    for p in [
        peer(1, "10.0.0.1:7000", None),
        peer(2, "[2001:db8::2]:7001", Some("192.0.2.9:7002")),
        peer(3, "192.0.2.1:1", Some("[::1]:9")),
    ] {
        let bytes = encode_peer(&p);
        assert_eq!(decode_peer(&bytes), Ok(p));
        for len in 0..bytes.len() {
            assert!(decode_peer(&bytes[..len]).is_err(), "{len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_peer(&longer), Err("1 bytes after the record".into()));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(
            decode_peer(&v2),
            Err("peer record version 2, expected 1".into())
        );
        let mut family = bytes;
        family[33] = 5;
        assert_eq!(
            decode_peer(&family),
            Err("unknown address family 5 in the address".into())
        );
    }
    let mut no_addr = vec![1u8];
    no_addr.extend_from_slice(&[0; 32]);
    no_addr.push(0);
    assert_eq!(decode_peer(&no_addr), Err("no address".into()));
}

proptest! {
    /// Decoding is total: any bytes give a peer or an error.
    #[test]
    fn decoding_peer_records_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Ok(p) = decode_peer(&bytes) {
            prop_assert_eq!(encode_peer(&p), bytes);
        }
    }
}

/// `n` commits of one peer, each exported as the update of that commit.
fn commits(doc: &LoroDoc, n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let before = doc.oplog_vv();
            doc.get_map("observations")
                .insert(&format!("{prefix}{i}"), i as i64)
                .unwrap();
            doc.get_counter("count").increment(1.0).unwrap();
            doc.commit();
            doc.export(ExportMode::updates(&before)).unwrap()
        })
        .collect()
}

/// The JSON of a fresh document importing `updates`.
fn rebuilt(updates: &[Bytes]) -> serde_json::Value {
    let doc = LoroDoc::new();
    for u in updates {
        doc.import(u).unwrap();
    }
    doc.get_deep_value().to_json_value()
}

#[test]
fn a_long_history_is_merged_into_one_update_of_the_same_document() {
    let dir = TempDir::new("redb-compact");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    let mut s = RedbStore::open(&path).unwrap().with_compaction_after(10);
    let doc = LoroDoc::new();
    doc.set_peer_id(7).unwrap();
    let mut raw_bytes = 0;
    for (i, u) in commits(&doc, 95, "k").into_iter().enumerate() {
        raw_bytes += u.len();
        s.append(&[("t".into(), Bytes::from(u))]).unwrap();
        s.append(&[("other".into(), Bytes::from(vec![i as u8]))])
            .unwrap();
        let stored = s.load().unwrap();
        let t = stored.documents.iter().find(|d| d.topic == "t").unwrap();
        assert!(t.updates.len() <= 10, "{} updates", t.updates.len());
        // The same document at every step.
        let want = doc.get_deep_value().to_json_value();
        if i == 94 {
            assert_eq!(rebuilt(&t.updates), want);
        }
    }
    let stored = s.load().unwrap();
    let t = &stored.documents[1];
    assert_eq!(rebuilt(&t.updates), doc.get_deep_value().to_json_value());
    let stored_bytes: usize = t.updates.iter().map(|u| u.len()).sum();
    assert!(stored_bytes < raw_bytes, "{stored_bytes} >= {raw_bytes}");
    // A topic whose updates do not import is left alone, and the store
    // does not retry it at every append.
    let other = &stored.documents[0];
    assert_eq!(other.topic, "other");
    assert_eq!(other.updates.len(), 95);
    drop(s);
    // Reopened: the same.
    let mut s = RedbStore::open(&path).unwrap();
    assert_eq!(s.load().unwrap(), stored);
}

#[test]
fn commits_that_wait_for_other_peers_operations_are_never_merged_away() {
    let dir = TempDir::new("redb-pending");
    fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("store.redb");
    let mut s = RedbStore::open(&path).unwrap().with_compaction_after(10);
    // This node commits 8 updates, then receives another peer's
    // operations, then commits 30 more: those depend on the other peer's,
    // which the store does not hold.
    let mine = LoroDoc::new();
    mine.set_peer_id(1).unwrap();
    let theirs = LoroDoc::new();
    theirs.set_peer_id(2).unwrap();
    let mut local = commits(&mine, 8, "a");
    let remote = commits(&theirs, 3, "b");
    for r in &remote {
        mine.import(r).unwrap();
    }
    local.extend(commits(&mine, 30, "c"));
    for u in local {
        s.append(&[("t".into(), Bytes::from(u))]).unwrap();
    }
    let stored = s.load().unwrap();
    let kept = &stored.documents[0].updates;
    // The 8 that stand alone are merged; the 30 others kept as they are.
    assert_eq!(kept.len(), 31);
    // With the other peer's operations, the node's whole document again.
    let mut all = kept.clone();
    all.extend(remote.into_iter().map(Bytes::from));
    assert_eq!(rebuilt(&all), mine.get_deep_value().to_json_value());
}
