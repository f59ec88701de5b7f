//! The handshake and the transport keys, over `snow` (real crypto) or
//! with the same sizes and no arithmetic ([`Crypto::Null`]).
//!
//! **Determinism.** snow draws ephemerals from its resolver's RNG; the
//! [`SeededResolver`] here gives it a ChaCha20 stream seeded with 32 bytes
//! the caller drew from the node's stream, and delegates every primitive
//! to snow's `DefaultResolver`. Nothing reads OS entropy.
//!
//! **Who the initiator is.** IK authenticates the initiator's X25519 key,
//! which is its ed25519 key in Montgomery form: that form drops the sign
//! of the Edwards x coordinate, so one X25519 key stands for two PeerIds.
//! The initiator puts the sign (bit 255 of its PeerId) in bit 31 of its
//! sender index, and the whole header (type and sender index) is the
//! Noise prologue: a flipped bit fails the handshake.
//!
//! **Null mode.** Message 1 is 32 random bytes (the "ephemeral"), the
//! initiator's PeerId, and 32 zero bytes (the two tags); message 2 is 32
//! random bytes and 16 zeros; a datagram is its plaintext and 16 zeros.

use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState, StatelessTransportState};

use super::wire::{KEY_LEN, MSG1_LEN, MSG2_LEN, TAG_LEN};
use super::Crypto;
use crate::PeerId;

/// The Noise protocol of every session.
pub(super) const PROTOCOL: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// Bit of an initiation's sender index that carries the sign of the
/// initiator's Edwards x coordinate.
pub(super) const SIGN_BIT: u32 = 1 << 31;

/// This node's keys, as the handshake needs them.
pub(super) struct Local {
    pub(super) id: PeerId,
    pub(super) secret: [u8; 32],
    pub(super) params: NoiseParams,
}

/// snow's primitives, with a seeded RNG.
struct SeededResolver {
    seed: [u8; 32],
}

/// A ChaCha20 stream, as snow's `Random`.
struct SeededRng(ChaCha20Rng);

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for SeededRng {}
impl Random for SeededRng {}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(SeededRng(ChaCha20Rng::from_seed(self.seed))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder<'a>(local: &'a Local, seed: [u8; 32], prologue: &'a [u8]) -> Builder<'a> {
    Builder::with_resolver(local.params.clone(), Box::new(SeededResolver { seed }))
        .local_private_key(&local.secret)
        .prologue(prologue)
}

/// The keys of one session, in one direction each.
pub(super) enum Transport {
    Real(StatelessTransportState),
    Null,
}

impl Transport {
    /// Seal `plaintext` with `nonce` into `out` (exactly its length plus a
    /// tag).
    pub(super) fn seal(&self, nonce: u64, plaintext: &[u8], out: &mut [u8]) {
        debug_assert_eq!(out.len(), plaintext.len() + TAG_LEN);
        match self {
            Transport::Real(t) => {
                t.write_message(nonce, plaintext, out)
                    .expect("sizes checked, nonce below the limit");
            }
            Transport::Null => {
                out[..plaintext.len()].copy_from_slice(plaintext);
                out[plaintext.len()..].fill(0);
            }
        }
    }

    /// Open `sealed` (sealed with `nonce`) into `out`, sized to the
    /// plaintext; false if it does not authenticate.
    pub(super) fn open(&self, nonce: u64, sealed: &[u8], out: &mut [u8]) -> bool {
        debug_assert_eq!(out.len() + TAG_LEN, sealed.len());
        match self {
            Transport::Real(t) => t.read_message(nonce, sealed, out).is_ok(),
            Transport::Null => {
                let (body, tag) = sealed.split_at(out.len());
                out.copy_from_slice(body);
                tag.iter().all(|&b| b == 0)
            }
        }
    }
}

/// The initiator's half-done handshake.
pub(super) enum Initiating {
    Real(Box<HandshakeState>),
    Null,
}

/// Message 1 to the responder with Noise static key `remote`, for the
/// initiation whose header (type, sender index) is `header`.
pub(super) fn initiate(
    crypto: Crypto,
    local: &Local,
    remote: &[u8; 32],
    header: &[u8],
    seed: [u8; 32],
) -> (Initiating, [u8; MSG1_LEN]) {
    let mut msg = [0; MSG1_LEN];
    match crypto {
        Crypto::Real => {
            let mut hs = builder(local, seed, header)
                .remote_public_key(remote)
                .build_initiator()
                .expect("IK initiator with both keys");
            let len = hs.write_message(&[], &mut msg).expect("message 1 fits");
            assert_eq!(len, MSG1_LEN);
            (Initiating::Real(Box::new(hs)), msg)
        }
        Crypto::Null => {
            msg[..KEY_LEN].copy_from_slice(&seed);
            msg[KEY_LEN..2 * KEY_LEN].copy_from_slice(local.id.as_bytes());
            (Initiating::Null, msg)
        }
    }
}

impl Initiating {
    /// Read message 2; `Err` if it does not authenticate (the state is
    /// unchanged: snow restores it, so a forged response costs nothing).
    pub(super) fn read_response(&mut self, msg: &[u8]) -> Result<(), ()> {
        match self {
            Initiating::Real(hs) => hs.read_message(msg, &mut []).map(drop).map_err(drop),
            Initiating::Null if msg[KEY_LEN..].iter().all(|&b| b == 0) => Ok(()),
            Initiating::Null => Err(()),
        }
    }

    /// The transport keys, once the response was read.
    pub(super) fn into_transport(self) -> Transport {
        match self {
            Initiating::Real(hs) => Transport::Real(
                hs.into_stateless_transport_mode()
                    .expect("the response was read"),
            ),
            Initiating::Null => Transport::Null,
        }
    }
}

/// What the responder made of message 1.
pub(super) struct Responded {
    pub(super) peer: PeerId,
    /// The initiator's Noise static key.
    pub(super) remote: [u8; 32],
    pub(super) msg: [u8; MSG2_LEN],
    pub(super) transport: Transport,
}

/// Read message 1 (of the initiation whose header is `header`) and write
/// message 2; `Err` if message 1 does not authenticate or names no valid
/// key.
pub(super) fn respond(
    crypto: Crypto,
    local: &Local,
    header: &[u8],
    msg1: &[u8],
    seed: [u8; 32],
) -> Result<Responded, ()> {
    let mut msg = [0; MSG2_LEN];
    match crypto {
        Crypto::Real => {
            let mut hs = builder(local, seed, header)
                .build_responder()
                .expect("IK responder with its key");
            hs.read_message(msg1, &mut []).map_err(drop)?;
            let remote: [u8; 32] = hs
                .get_remote_static()
                .and_then(|k| k.try_into().ok())
                .ok_or(())?;
            let sign = u8::from(super::wire::u32_at(header, 1) & SIGN_BIT != 0);
            let edwards = MontgomeryPoint(remote).to_edwards(sign).ok_or(())?;
            let peer = PeerId(edwards.compress().to_bytes());
            let len = hs.write_message(&[], &mut msg).map_err(drop)?;
            assert_eq!(len, MSG2_LEN);
            let transport = hs.into_stateless_transport_mode().map_err(drop)?;
            Ok(Responded {
                peer,
                remote,
                msg,
                transport: Transport::Real(transport),
            })
        }
        Crypto::Null => {
            if msg1[2 * KEY_LEN..].iter().any(|&b| b != 0) {
                return Err(());
            }
            let peer = PeerId(msg1[KEY_LEN..2 * KEY_LEN].try_into().expect("32 bytes"));
            let remote = super::static_public(&peer).ok_or(())?;
            msg[..KEY_LEN].copy_from_slice(&seed);
            Ok(Responded {
                peer,
                remote,
                msg,
                transport: Transport::Null,
            })
        }
    }
}

/// The sign of `peer`'s Edwards x coordinate, as [`SIGN_BIT`].
pub(super) fn sign_bit(peer: &PeerId) -> u32 {
    if peer.as_bytes()[31] & 0x80 != 0 {
        SIGN_BIT
    } else {
        0
    }
}
