//! What a node keeps across restarts, behind one interface.
//!
//! The driver is the only user: when it starts it [`Store::load`]s the
//! knowledge updates and the peer cache into the node; it makes each
//! knowledge commit durable with [`Store::append`] *before* it acknowledges
//! the write to the application; and it saves the peer cache when it
//! changes. The real daemon implements the trait on an embedded
//! transactional database (`grove-node`'s data directory); the simulator
//! gives each host a [`MemStore`] that outlives the host's crashes, which
//! keeps exactly what was made durable before the crash: an `append` that
//! returned is kept, and there is nothing else, because nothing is ever
//! half-written between two polls of a simulated host.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;

use crate::Peer;

/// A store that failed: what went wrong, naming the file or record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        StoreError(message.into())
    }
}

/// One knowledge document as stored: its updates in the order they were
/// made durable (importing them all rebuilds it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Document {
    pub topic: String,
    pub updates: Vec<Bytes>,
}

/// Everything a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// By topic, in topic order.
    pub documents: Vec<Document>,
    /// The peer cache, most recent first.
    pub peers: Vec<Peer>,
}

/// Durable state of one node.
pub trait Store {
    /// Everything kept, for a node that starts.
    ///
    /// # Errors
    ///
    /// The store cannot be read, or a record in it is corrupt: the error
    /// names which. A node must not start on a store it cannot read (it
    /// would silently forget what it acknowledged).
    fn load(&mut self) -> Result<Stored, StoreError>;

    /// Make `updates` (topic, update) durable, all or none; `Ok` only once
    /// they are.
    ///
    /// # Errors
    ///
    /// Nothing was made durable.
    fn append(&mut self, updates: &[(String, Bytes)]) -> Result<(), StoreError>;

    /// Replace the peer cache (most recent first).
    ///
    /// # Errors
    ///
    /// The old cache is kept.
    fn save_peers(&mut self, peers: &[Peer]) -> Result<(), StoreError>;
}

/// A store in memory: the simulator's per-host store (it lives in the
/// world, not in the host's task, so a crash does not take it), and the
/// tests'. Every call is durable when it returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemStore {
    documents: BTreeMap<String, Vec<Bytes>>,
    peers: Vec<Peer>,
}

impl MemStore {
    pub fn new() -> Self {
        MemStore::default()
    }

    /// Updates kept, over all documents.
    pub fn update_count(&self) -> usize {
        self.documents.values().map(Vec::len).sum()
    }

    /// The peer cache as last saved.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }
}

impl Store for MemStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        Ok(Stored {
            documents: self
                .documents
                .iter()
                .map(|(topic, updates)| Document {
                    topic: topic.clone(),
                    updates: updates.clone(),
                })
                .collect(),
            peers: self.peers.clone(),
        })
    }

    fn append(&mut self, updates: &[(String, Bytes)]) -> Result<(), StoreError> {
        for (topic, update) in updates {
            match self.documents.get_mut(topic) {
                Some(log) => log.push(update.clone()),
                None => {
                    self.documents.insert(topic.clone(), vec![update.clone()]);
                }
            }
        }
        Ok(())
    }

    fn save_peers(&mut self, peers: &[Peer]) -> Result<(), StoreError> {
        self.peers.clear();
        self.peers.extend_from_slice(peers);
        self.peers.shrink_to_fit();
        Ok(())
    }
}

impl<S: Store + ?Sized> Store for &mut S {
    fn load(&mut self) -> Result<Stored, StoreError> {
        (**self).load()
    }
    fn append(&mut self, updates: &[(String, Bytes)]) -> Result<(), StoreError> {
        (**self).append(updates)
    }
    fn save_peers(&mut self, peers: &[Peer]) -> Result<(), StoreError> {
        (**self).save_peers(peers)
    }
}

/// A store shared with its owner (the simulator's world keeps each host's
/// store while the host's task uses it).
impl<S: Store> Store for Rc<RefCell<S>> {
    fn load(&mut self) -> Result<Stored, StoreError> {
        self.borrow_mut().load()
    }
    fn append(&mut self, updates: &[(String, Bytes)]) -> Result<(), StoreError> {
        self.borrow_mut().append(updates)
    }
    fn save_peers(&mut self, peers: &[Peer]) -> Result<(), StoreError> {
        self.borrow_mut().save_peers(peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;

    #[test]
    fn mem_store_keeps_updates_in_order_by_topic_and_the_last_peer_cache() {
        let mut s = MemStore::new();
        assert_eq!(s.load().unwrap(), Stored::default());
        s.append(&[("b".into(), Bytes::from_static(b"1"))]).unwrap();
        s.append(&[
            ("a".into(), Bytes::from_static(b"2")),
            ("b".into(), Bytes::from_static(b"3")),
        ])
        .unwrap();
        let p = Peer::new(PeerId([1; 32]), "10.0.0.1:7000".parse().unwrap());
        s.save_peers(&[p, p]).unwrap();
        s.save_peers(&[p]).unwrap();
        let stored = s.load().unwrap();
        assert_eq!(stored.peers, [p]);
        let docs: Vec<(&str, Vec<&[u8]>)> = stored
            .documents
            .iter()
            .map(|d| (d.topic.as_str(), d.updates.iter().map(|u| &u[..]).collect()))
            .collect();
        assert_eq!(
            docs,
            [("a", vec![&b"2"[..]]), ("b", vec![&b"1"[..], &b"3"[..]])]
        );
        assert_eq!(s.update_count(), 3);
    }
}
