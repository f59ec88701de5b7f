//! One topic's Loro document and the application's edits on it.
//!
//! Layout of a document (root containers):
//! - `observations`: a map, key → value, last writer wins;
//! - `graph`: a movable tree, each node's metadata holds its `label`;
//! - `counter:<name>`: a counter (votes, tallies);
//! - `set:<name>`: a map used as a set, item → `true` (add is idempotent).

use bytes::Bytes;
use loro::{ExportMode, Frontiers, LoroDoc, LoroValue, ToJson, TreeID, VersionVector};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest key, counter, set or label name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest string value or item, in bytes.
pub const MAX_VALUE_BYTES: usize = 512;

/// An edit the application makes to a document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Write {
    /// Set `key` of the observations map (last writer wins). Objects and
    /// arrays are stored as their JSON text.
    Observe {
        key: String,
        value: serde_json::Value,
    },
    /// Add a node labelled `label` to the knowledge graph, under `parent`
    /// (a node id as returned by an earlier add; none: a root).
    TreeAdd {
        #[serde(default)]
        parent: Option<String>,
        label: String,
    },
    /// Move `node` under `parent` (none: make it a root).
    TreeMove {
        node: String,
        #[serde(default)]
        parent: Option<String>,
    },
    /// Add `by` to counter `name`.
    Increment { name: String, by: f64 },
    /// Add `item` to set `name`.
    SetAdd { name: String, item: String },
}

/// Why an edit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the knowledge commons is not enabled on this node")]
    Disabled,
    #[error("topic {0:?} is not 1 to 32 bytes")]
    BadTopic(String),
    #[error("already holding the maximum of {0} topics")]
    TooManyTopics(usize),
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{0:?} is not a tree node id")]
    BadTreeNode(String),
    #[error("the document refused the edit: {0}")]
    Refused(String),
    #[error("the edit's update is {len} bytes, over max_update_bytes = {max}")]
    UpdateTooLarge { len: usize, max: usize },
}

/// A document with its derived values.
pub(super) struct Doc {
    pub(super) doc: LoroDoc,
    /// Hash of the oplog frontiers: equal on two replicas exactly when
    /// they hold the same operations (and so, being a CRDT, the same state).
    pub(super) version_hash: u64,
    /// What the node's store holds of this document: the operations up to
    /// these frontiers (kept as frontiers, a few ids, rather than a version
    /// vector with an entry per writer ever seen).
    persisted: Frontiers,
}

impl Doc {
    /// An empty document whose operations carry `peer`.
    pub(super) fn new(peer: u64) -> Doc {
        let doc = LoroDoc::new();
        doc.set_peer_id(peer)
            .expect("peer id below the reserved value");
        // No wall clock: change timestamps stay off (the default, said
        // again here because determinism depends on it).
        doc.set_record_timestamp(false);
        let mut d = Doc {
            doc,
            version_hash: 0,
            persisted: Frontiers::default(),
        };
        d.rehash();
        d
    }

    /// Recompute the version hash (0 for an empty document); whether it
    /// changed.
    pub(super) fn rehash(&mut self) -> bool {
        let mut ids: Vec<(u64, i32)> = self
            .doc
            .oplog_frontiers()
            .iter()
            .map(|id| (id.peer, id.counter))
            .collect();
        ids.sort_unstable();
        let ids_empty = ids.is_empty();
        let mut h = Sha256::new();
        for (peer, counter) in ids {
            h.update(peer.to_be_bytes());
            h.update(counter.to_be_bytes());
        }
        let hash = if ids_empty {
            0
        } else {
            u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
        };
        let changed = hash != self.version_hash;
        self.version_hash = hash;
        changed
    }

    pub(super) fn vv(&self) -> VersionVector {
        self.doc.oplog_vv()
    }

    /// The operations held now are all in the store (they were just
    /// restored from it).
    pub(super) fn mark_persisted(&mut self) {
        self.persisted = self.doc.oplog_frontiers();
    }

    /// Apply `write`, commit, and return the update that makes the store
    /// whole again: every operation held that the store lacks, i.e. the
    /// edit's own and those imported from peers since the last commit (and
    /// the id of a node a `TreeAdd` created). So a store that keeps every
    /// such update holds a closed set: each stored edit's dependencies are
    /// stored too, a restarted node shows every acknowledged edit at once,
    /// without waiting for a peer to supply what its edits built on, and a
    /// store can merge its updates at will.
    pub(super) fn apply(&mut self, write: &Write) -> Result<(Bytes, Option<String>), WriteError> {
        let before = self
            .doc
            .frontiers_to_vv(&self.persisted)
            .unwrap_or_default();
        let refused = |e: loro::LoroError| WriteError::Refused(e.to_string());
        let mut created = None;
        match write {
            Write::Observe { key, value } => {
                check("key", key, MAX_NAME_BYTES)?;
                let v = to_loro(value)?;
                self.doc
                    .get_map("observations")
                    .insert(key, v)
                    .map_err(refused)?;
            }
            Write::TreeAdd { parent, label } => {
                check("label", label, MAX_NAME_BYTES)?;
                let parent = parent.as_deref().map(tree_id).transpose()?;
                let tree = self.doc.get_tree("graph");
                let node = tree.create(parent).map_err(refused)?;
                tree.get_meta(node)
                    .map_err(refused)?
                    .insert("label", label.as_str())
                    .map_err(refused)?;
                created = Some(node.to_string());
            }
            Write::TreeMove { node, parent } => {
                let node = tree_id(node)?;
                let parent = parent.as_deref().map(tree_id).transpose()?;
                self.doc
                    .get_tree("graph")
                    .mov(node, parent)
                    .map_err(refused)?;
            }
            Write::Increment { name, by } => {
                check("counter name", name, MAX_NAME_BYTES)?;
                if !by.is_finite() {
                    return Err(WriteError::Refused("increment is not finite".into()));
                }
                self.doc
                    .get_counter(format!("counter:{name}").as_str())
                    .increment(*by)
                    .map_err(refused)?;
            }
            Write::SetAdd { name, item } => {
                check("set name", name, MAX_NAME_BYTES)?;
                check("item", item, MAX_VALUE_BYTES)?;
                self.doc
                    .get_map(format!("set:{name}").as_str())
                    .insert(item, true)
                    .map_err(refused)?;
            }
        }
        self.doc.commit();
        let update = self
            .doc
            .export(ExportMode::updates(&before))
            .map_err(|e| WriteError::Refused(e.to_string()))?;
        self.persisted = self.doc.oplog_frontiers();
        Ok((Bytes::from(update), created))
    }

    /// The document's state as JSON.
    pub(super) fn json(&self) -> serde_json::Value {
        self.doc.get_deep_value().to_json_value()
    }
}

/// Hash of a JSON value's canonical text (object keys sorted).
pub fn state_hash(json: &serde_json::Value) -> u64 {
    let text = serde_json::to_string(json).expect("JSON serialises");
    let digest = Sha256::digest(text.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn check(what: &'static str, s: &str, max: usize) -> Result<(), WriteError> {
    if s.len() > max {
        return Err(WriteError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn tree_id(s: &str) -> Result<TreeID, WriteError> {
    TreeID::try_from(s).map_err(|_| WriteError::BadTreeNode(s.to_owned()))
}

fn to_loro(value: &serde_json::Value) -> Result<LoroValue, WriteError> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => LoroValue::Null,
        J::Bool(b) => LoroValue::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => LoroValue::I64(i),
            None => LoroValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => {
            check("value", s, MAX_VALUE_BYTES)?;
            LoroValue::from(s.as_str())
        }
        J::Array(_) | J::Object(_) => {
            let text = value.to_string();
            check("value", &text, MAX_VALUE_BYTES)?;
            LoroValue::from(text.as_str())
        }
    })
}
