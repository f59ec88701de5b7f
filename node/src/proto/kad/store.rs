//! What a DHT server stores for others: provider records (who provides a
//! key, until when) and signed value records. Both bounded and expired on
//! virtual time (libp2p kad-dht spec: provider records expire after 48 h
//! unless republished).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::key::Key;
use crate::{Peer, PeerId, Time};

/// Largest value a record may carry, so that a VALUE response with the
/// record and 20 IPv6 peers fits one datagram.
pub const MAX_VALUE_BYTES: usize = 192;

/// A signed value record: `value` under `key`, version `seq`, signed by
/// `publisher` (its ed25519 key is its peer id).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    pub key: Key,
    pub seq: u64,
    pub publisher: PeerId,
    pub value: Bytes,
    pub signature: [u8; 64],
}

impl Record {
    fn signed_bytes(key: &Key, seq: u64, value: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + 32 + 8 + value.len());
        m.extend_from_slice(b"grove-kad-record");
        m.extend_from_slice(&key.0);
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(value);
        m
    }

    /// A record signed by `signer`.
    #[must_use]
    pub fn sign(signer: &SigningKey, key: Key, seq: u64, value: Bytes) -> Record {
        let signature = signer
            .sign(&Self::signed_bytes(&key, seq, &value))
            .to_bytes();
        Record {
            key,
            seq,
            publisher: PeerId(signer.verifying_key().to_bytes()),
            value,
            signature,
        }
    }

    /// Whether the publisher signed exactly this record.
    #[must_use]
    pub fn verify(&self) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(self.publisher.as_bytes()) else {
            return false;
        };
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&Self::signed_bytes(&self.key, self.seq, &self.value), &sig)
            .is_ok()
    }
}

/// Provider and value records, bounded.
pub struct Store {
    providers: BTreeMap<Key, Vec<(Peer, Time)>>,
    /// (expiry, key, provider) of every provider record.
    expiry: BTreeSet<(Time, Key, PeerId)>,
    values: BTreeMap<Key, (Record, Time)>,
    max_provider_records: usize,
    max_providers_per_key: usize,
    max_values: usize,
}

/// Why a record was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the store is full")]
    Full,
    #[error("the key has as many providers as allowed")]
    KeyFull,
    #[error("the record's signature does not verify")]
    BadSignature,
    #[error("a record with a higher sequence number is stored")]
    Stale,
}

impl Store {
    pub fn new(
        max_provider_records: usize,
        max_providers_per_key: usize,
        max_values: usize,
    ) -> Self {
        Store {
            providers: BTreeMap::new(),
            expiry: BTreeSet::new(),
            values: BTreeMap::new(),
            max_provider_records,
            max_providers_per_key,
            max_values,
        }
    }

    /// `provider` provides `key` until `now + ttl` (a known provider's
    /// record is renewed).
    pub fn add_provider(
        &mut self,
        now: Time,
        key: Key,
        provider: Peer,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let expires = now + ttl;
        let full = self.expiry.len() >= self.max_provider_records;
        let list = self.providers.entry(key).or_default();
        if let Some(slot) = list.iter_mut().find(|(p, _)| p.id == provider.id) {
            self.expiry.remove(&(slot.1, key, provider.id));
            *slot = (provider, expires);
            self.expiry.insert((expires, key, provider.id));
            return Ok(());
        }
        if full {
            if list.is_empty() {
                self.providers.remove(&key);
            }
            return Err(StoreError::Full);
        }
        if list.len() >= self.max_providers_per_key {
            return Err(StoreError::KeyFull);
        }
        list.push((provider, expires));
        self.expiry.insert((expires, key, provider.id));
        Ok(())
    }

    /// Live providers of `key`, at most `max`.
    #[must_use]
    pub fn providers(&self, now: Time, key: &Key, max: usize) -> Vec<Peer> {
        self.providers
            .get(key)
            .map(|l| {
                l.iter()
                    .filter(|(_, t)| *t > now)
                    .map(|(p, _)| *p)
                    .take(max)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn provider_records(&self) -> usize {
        self.expiry.len()
    }

    /// Store a verified record, keeping the highest `seq` per key.
    pub fn put_value(
        &mut self,
        now: Time,
        record: Record,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if !record.verify() {
            return Err(StoreError::BadSignature);
        }
        match self.values.get(&record.key) {
            Some((old, _)) if old.seq > record.seq => return Err(StoreError::Stale),
            None if self.values.len() >= self.max_values => return Err(StoreError::Full),
            _ => {}
        }
        self.values.insert(record.key, (record, now + ttl));
        Ok(())
    }

    #[must_use]
    pub fn get_value(&self, now: Time, key: &Key) -> Option<&Record> {
        self.values
            .get(key)
            .filter(|(_, t)| *t > now)
            .map(|(r, _)| r)
    }

    /// Drop every record expired at `now`.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(t, key, id)) = self.expiry.first() {
            if t > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(list) = self.providers.get_mut(&key) {
                list.retain(|(p, _)| p.id != id);
                if list.is_empty() {
                    self.providers.remove(&key);
                }
            }
        }
        self.values.retain(|_, (_, t)| *t > now);
    }

    /// The earliest expiry.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Time> {
        self.expiry.first().map(|(t, _, _)| *t)
    }
}
