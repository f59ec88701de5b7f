//! The daemon's [`Store`]: `store.redb` in the data directory, a `redb`
//! database (pure Rust, copy-on-write B-trees, checksummed pages; a commit
//! is durable when it returns, and a crash at any moment leaves the last
//! commit).
//!
//! Tables (schema version [`SCHEMA_VERSION`], kept in `meta`):
//!
//! - `meta`: `"schema"` → the schema version.
//! - `updates`: (topic as UTF-8 bytes, sequence number) → one Loro update;
//!   a topic's updates in commit order. Each [`Store::append`] is one write
//!   transaction. When a topic holds more than its compaction threshold
//!   ([`COMPACT_AFTER`] by default), the same transaction replaces its
//!   oldest updates by one that merges them (see [`merge`]), so what a
//!   topic keeps is bounded by its document, not by its history of
//!   commits.
//! - `peers`: rank (0: most recent) → a peer record (see [`encode_peer`]).
//!   Its size is the node's peer cache (`[rejoin] cache_capacity`, at most
//!   256 records).
//!
//! Decoding never panics: a record that does not decode is an error naming
//! the file, the table and the key, and the node does not start on it. So
//! is a file that is not a redb database, fails its integrity check, or
//! has no or another schema version.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use loro::{ExportMode, LoroDoc};
use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, Table, TableDefinition,
    TableHandle,
};

use crate::store::{Document, Store, StoreError, Stored};
use crate::{Peer, PeerId};

/// The layout of the tables below; a store with another is refused.
pub const SCHEMA_VERSION: u64 = 1;
/// A topic holding more updates than this has them merged into one.
/// Loading 1,000 small updates (a few hundred bytes each) takes
/// milliseconds, and the merge runs once per 1,000 commits of the topic.
pub const COMPACT_AFTER: u64 = 1000;
/// redb's page cache (its default is 1 GiB): the store holds documents
/// of at most a few MiB each and is read whole only at start.
const CACHE_BYTES: usize = 16 << 20;
/// The Loro peer id of the document a compaction builds: it only imports,
/// so no operation ever carries it, but a fixed one keeps compaction free
/// of randomness.
const COMPACTION_PEER: u64 = 0x0067_726f_7665;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const UPDATES: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("updates");
const PEERS: TableDefinition<u32, &[u8]> = TableDefinition::new("peers");
const SCHEMA_KEY: &str = "schema";

/// Durable state of the daemon in one redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    compact_after: u64,
    /// Per topic, the count of updates above which the next compaction is
    /// tried, when a compaction could merge only part of them (see
    /// [`merge`]); absent: `compact_after`. At most one entry per topic.
    next_compaction: BTreeMap<String, u64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedbStore({})", self.path.display())
    }
}

impl RedbStore {
    /// Open the store at `path`, creating it when there is no file (or an
    /// empty one).
    ///
    /// # Errors
    ///
    /// The file is not a redb database, fails its integrity check, is open
    /// in another process, or is not a Grove store of this schema version:
    /// the error names the file. A store that cannot be read is never
    /// replaced by a fresh one.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let err = |what: String| StoreError(format!("{}: {what}", path.display()));
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            // Verify every page's checksum at each start, not only after a
            // crash: a damaged file is then an error instead of being
            // trusted (redb may panic reading a damaged page it trusts).
            // The store is small, so the check costs milliseconds.
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| err(open_error(e)))?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
            compact_after: COMPACT_AFTER,
            next_compaction: BTreeMap::new(),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// The same store, compacting a topic once it holds more than `n`
    /// updates (at least 2; tests use small values).
    pub fn with_compaction_after(mut self, n: u64) -> Self {
        self.compact_after = n.max(2);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError(format!("{}: {what}", self.path.display()))
    }

    /// A new store gets its schema version and tables; an existing one
    /// must have this version.
    fn check_schema(&self) -> Result<(), StoreError> {
        let read = self.db.begin_read().map_err(|e| self.err(e))?;
        let tables: Vec<String> = read
            .list_tables()
            .map_err(|e| self.err(e))?
            .map(|t| t.name().to_owned())
            .collect();
        if tables.is_empty() {
            // Nothing was ever committed (a new file, or a crash before the
            // first commit): nothing can be lost by initialising it.
            let txn = self.db.begin_write().map_err(|e| self.err(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(SCHEMA_KEY, SCHEMA_VERSION)
                .map_err(|e| self.err(e))?;
            drop(meta);
            txn.open_table(UPDATES).map_err(|e| self.err(e))?;
            txn.open_table(PEERS).map_err(|e| self.err(e))?;
            return txn.commit().map_err(|e| self.err(e));
        }
        if !tables.iter().any(|t| t == META.name()) {
            return Err(self.err(format!(
                "not a Grove store: no schema version (tables: {})",
                tables.join(", ")
            )));
        }
        let meta = read.open_table(META).map_err(|e| self.err(e))?;
        let version = meta
            .get(SCHEMA_KEY)
            .map_err(|e| self.err(e))?
            .map(|v| v.value());
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            Some(v) => Err(self.err(format!(
                "schema version {v}; this grove-node reads version {SCHEMA_VERSION}"
            ))),
            None => Err(self.err("not a Grove store: no schema version")),
        }
    }

    /// Merge `topic`'s updates when it holds more than its threshold.
    fn maybe_compact(
        &mut self,
        table: &mut Table<(&[u8], u64), &[u8]>,
        topic: &str,
    ) -> Result<(), StoreError> {
        let key = topic.as_bytes();
        let Some((first, last)) = bounds(table, key).map_err(|e| self.err(e))? else {
            return Ok(());
        };
        let count = last - first + 1;
        let limit = self
            .next_compaction
            .get(topic)
            .copied()
            .unwrap_or(self.compact_after);
        if count <= limit {
            return Ok(());
        }
        let mut updates = Vec::new();
        for entry in table
            .range((key, first)..=(key, last))
            .map_err(|e| self.err(e))?
        {
            let (_, v) = entry.map_err(|e| self.err(e))?;
            updates.push(v.value().to_vec());
        }
        let (merged, taken) = merge(&updates);
        let kept = match merged {
            Some(merged) if taken >= 2 => {
                // The merged update takes the place of the last one it
                // replaces: it still comes before those it did not.
                for seq in first..first + taken as u64 {
                    table.remove((key, seq)).map_err(|e| self.err(e))?;
                }
                let at = first + taken as u64 - 1;
                table
                    .insert((key, at), merged.as_slice())
                    .map_err(|e| self.err(e))?;
                tracing::debug!(topic, taken, bytes = merged.len(), "compacted");
                count - taken as u64 + 1
            }
            _ => count,
        };
        if kept > 1 {
            tracing::warn!(
                topic,
                kept,
                "stored updates that could not be merged (they wait for other peers' operations, or do not import)"
            );
            self.next_compaction
                .insert(topic.to_owned(), kept + self.compact_after);
        } else {
            self.next_compaction.remove(topic);
        }
        Ok(())
    }
}

/// The first and last sequence numbers of the updates of the topic
/// `key` (its numbers in between are all used: a compaction removes a
/// prefix and puts its merge at the prefix's last number).
fn bounds(
    table: &impl ReadableTable<(&'static [u8], u64), &'static [u8]>,
    key: &[u8],
) -> Result<Option<(u64, u64)>, redb::StorageError> {
    let mut range = table.range((key, 0u64)..=(key, u64::MAX))?;
    let Some(first) = range.next().transpose()? else {
        return Ok(None);
    };
    let first = first.0.value().1;
    let last = match range.next_back().transpose()? {
        Some((k, _)) => k.value().1,
        None => first,
    };
    Ok(Some((first, last)))
}

/// One line for a database that would not open.
fn open_error(e: DatabaseError) -> String {
    match e {
        DatabaseError::DatabaseAlreadyOpen => {
            "in use by another process (is another grove-node running on this data directory?)"
                .into()
        }
        DatabaseError::UpgradeRequired(v) => {
            format!("written in redb file format {v}, which this grove-node cannot read")
        }
        DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            format!("not a Grove store (not a redb database: {e})")
        }
        DatabaseError::Storage(redb::StorageError::Corrupted(what)) => {
            format!("corrupt store (integrity check failed: {what})")
        }
        e => format!("cannot open the store: {e}"),
    }
}

/// One update that holds the operations of a prefix of `updates` (which
/// come in commit order), and how many it covers: all of them, unless one
/// does not import on its own, or has operations that wait for those of
/// other peers (a node's own commits depend on what it had received from
/// others, which the store does not keep; the node gets those from its
/// peers again). Such an update and every later one are left as they are,
/// so that a compaction never drops an operation it cannot reproduce.
pub fn merge(updates: &[Vec<u8>]) -> (Option<Vec<u8>>, usize) {
    let doc = LoroDoc::new();
    if doc.set_peer_id(COMPACTION_PEER).is_err() {
        return (None, 0);
    }
    // Most often every update imports at once (a node alone, or one whose
    // commits came before it heard of others): one batch, which Loro
    // applies much faster than update by update.
    if let Ok(status) = doc.import_batch(updates) {
        if status.pending.is_none() {
            return match doc.export(ExportMode::all_updates()) {
                Ok(merged) => (Some(merged), updates.len()),
                Err(_) => (None, 0),
            };
        }
    }
    // Else update by update, to find the first that does not stand alone.
    let doc = LoroDoc::new();
    if doc.set_peer_id(COMPACTION_PEER).is_err() {
        return (None, 0);
    }
    let mut taken = 0;
    for update in updates {
        match doc.import(update) {
            Ok(status) if status.pending.is_none() => taken += 1,
            _ => break,
        }
    }
    if taken == 0 {
        return (None, 0);
    }
    match doc.export(ExportMode::all_updates()) {
        Ok(merged) => (Some(merged), taken),
        Err(_) => (None, 0),
    }
}

impl Store for RedbStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut documents: Vec<Document> = Vec::new();
        let updates = txn.open_table(UPDATES).map_err(|e| self.err(e))?;
        for entry in updates.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            let (topic, seq) = k.value();
            let Ok(topic) = std::str::from_utf8(topic) else {
                return Err(self.err(format!(
                    "table updates, key ({topic:?}, {seq}): the topic is not UTF-8"
                )));
            };
            let update = Bytes::copy_from_slice(v.value());
            match documents.last_mut() {
                Some(doc) if doc.topic == topic => doc.updates.push(update),
                _ => documents.push(Document {
                    topic: topic.to_owned(),
                    updates: vec![update],
                }),
            }
        }
        let mut peers = Vec::new();
        let table = txn.open_table(PEERS).map_err(|e| self.err(e))?;
        for entry in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            let peer = decode_peer(v.value())
                .map_err(|e| self.err(format!("table peers, key {}: {e}", k.value())))?;
            peers.push(peer);
        }
        Ok(Stored { documents, peers })
    }

    fn append(&mut self, updates: &[(String, Bytes)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(UPDATES).map_err(|e| self.err(e))?;
            let mut topics = BTreeSet::new();
            for (topic, update) in updates {
                let key = topic.as_bytes();
                let bounds = bounds(&table, key).map_err(|e| self.err(e))?;
                let seq = bounds.map_or(0, |(_, last)| last + 1);
                table
                    .insert((key, seq), &update[..])
                    .map_err(|e| self.err(e))?;
                topics.insert(topic.as_str());
            }
            for topic in topics {
                self.maybe_compact(&mut table, topic)?;
            }
        }
        // Durable when `commit` returns (redb's default durability,
        // `Immediate`: the data and then the commit record are synced).
        txn.commit().map_err(|e| self.err(e))
    }

    fn save_peers(&mut self, peers: &[Peer]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(PEERS).map_err(|e| self.err(e))?;
            table.retain(|_, _| false).map_err(|e| self.err(e))?;
            for (rank, peer) in (0u32..).zip(peers) {
                table
                    .insert(rank, encode_peer(peer).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

/// The peer record format's version (its first byte).
const PEER_RECORD_V1: u8 = 1;
const FAMILY_NONE: u8 = 0;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// A peer record: version 1, the peer id (32 bytes), its address, and its
/// relay's address or none. An address is a family byte (4 or 6; 0: none,
/// for the relay only), the IP (4 or 16 bytes) and the port (2 bytes, big
/// endian): 40 to 72 bytes.
pub fn encode_peer(peer: &Peer) -> Vec<u8> {
    let mut out = Vec::with_capacity(72);
    out.push(PEER_RECORD_V1);
    out.extend_from_slice(peer.id.as_bytes());
    put_addr(&mut out, Some(peer.addr));
    put_addr(&mut out, peer.relay);
    out
}

fn put_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    match addr.map(|a| (a.ip(), a.port())) {
        None => out.push(FAMILY_NONE),
        Some((IpAddr::V4(ip), port)) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&port.to_be_bytes());
        }
        Some((IpAddr::V6(ip), port)) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
}

/// The peer in a record written by [`encode_peer`]; any other bytes are an
/// error saying what is wrong with them.
///
/// # Errors
///
/// Another version, a truncated record, an unknown address family, a
/// missing address, or bytes left over.
pub fn decode_peer(bytes: &[u8]) -> Result<Peer, String> {
    let mut r = bytes;
    match take::<1>(&mut r, "version")? {
        [PEER_RECORD_V1] => {}
        [v] => {
            return Err(format!(
                "peer record version {v}, expected {PEER_RECORD_V1}"
            ))
        }
    }
    let id = PeerId(take::<32>(&mut r, "peer id")?);
    let addr = take_addr(&mut r, "address")?.ok_or("no address")?;
    let relay = take_addr(&mut r, "relay")?;
    if !r.is_empty() {
        return Err(format!("{} bytes after the record", r.len()));
    }
    Ok(Peer { id, addr, relay })
}

fn take<const N: usize>(r: &mut &[u8], what: &str) -> Result<[u8; N], String> {
    let Some((head, rest)) = r.split_first_chunk::<N>() else {
        return Err(format!("truncated in the {what}"));
    };
    *r = rest;
    Ok(*head)
}

fn take_addr(r: &mut &[u8], what: &str) -> Result<Option<SocketAddr>, String> {
    let ip = match take::<1>(r, what)? {
        [FAMILY_NONE] => return Ok(None),
        [FAMILY_V4] => IpAddr::V4(Ipv4Addr::from(take::<4>(r, what)?)),
        [FAMILY_V6] => IpAddr::V6(Ipv6Addr::from(take::<16>(r, what)?)),
        [f] => return Err(format!("unknown address family {f} in the {what}")),
    };
    let port = u16::from_be_bytes(take::<2>(r, what)?);
    Ok(Some(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests;
