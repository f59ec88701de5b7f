//! The handshake and the transport keys, over `snow` (real crypto) or
//! with the same sizes and no arithmetic ([`Crypto::Null`]).
//!
//! **Determinism.** snow draws ephemerals from its resolver's RNG; the
//! [`SeededResolver`] here gives it a ChaCha20 stream seeded with 32 bytes
//! the caller drew from the node's stream. Nothing reads OS entropy.
//!
//! **Primitives.** Hashes and ciphers are snow's `DefaultResolver`'s.
//! X25519 is [`X25519`]: curve25519-dalek's arithmetic, as in snow's own,
//! with two savings that change no result (a property test compares every
//! answer with the Montgomery ladder's). The node's static key pair is
//! known, so setting it costs no base-point multiplication (snow derives
//! the public key again for every handshake). And a Diffie-Hellman runs on
//! the Edwards form of the peer's point, where curve25519-dalek's
//! constant-time variable-base multiplication uses AVX2 when the CPU has
//! it, instead of the serial Montgomery ladder: about 35 us against 75 us
//! here. A handshake makes eight of them (four on each side).
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
use zeroize::Zeroize;

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
    /// The Noise static key pair (X25519).
    pub(super) secret: [u8; 32],
    pub(super) public: [u8; 32],
    pub(super) params: NoiseParams,
}

/// snow's primitives, with a seeded RNG and [`X25519`].
struct SeededResolver {
    seed: [u8; 32],
    /// The node's static key pair (secret, public).
    local: ([u8; 32], [u8; 32]),
}

/// X25519 for snow (see the module's doc).
struct X25519 {
    secret: [u8; 32],
    public: [u8; 32],
    /// The node's static key pair: setting its secret takes its public key
    /// from here.
    local: ([u8; 32], [u8; 32]),
}

impl Drop for X25519 {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, secret: &[u8]) {
        self.secret.copy_from_slice(&secret[..32]);
        self.public = if self.secret == self.local.0 {
            self.local.1
        } else {
            MontgomeryPoint::mul_base_clamped(self.secret).to_bytes()
        };
    }
    fn generate(&mut self, rng: &mut dyn Random) {
        rng.fill_bytes(&mut self.secret);
        self.public = MontgomeryPoint::mul_base_clamped(self.secret).to_bytes();
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.secret
    }
    fn dh(&self, public: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let point: [u8; 32] = public
            .get(..32)
            .and_then(|p| p.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        out.get_mut(..32)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&x25519(self.secret, MontgomeryPoint(point)));
        Ok(())
    }
}

/// X25519 (RFC 7748) of `secret` and `point`: on the Edwards form when
/// `point` is on the curve, by the Montgomery ladder when it is on the
/// twist (which has no Edwards form). Both compute the u-coordinate of
/// `[clamp(secret)] point`; a point and its negation share it, so the sign
/// chosen for the Edwards point does not matter. Constant time in
/// `secret`; the branch depends on the public point only.
pub(super) fn x25519(secret: [u8; 32], point: MontgomeryPoint) -> [u8; 32] {
    match point.to_edwards(0) {
        Some(edwards) => edwards.mul_clamped(secret).to_montgomery().to_bytes(),
        None => point.mul_clamped(secret).to_bytes(),
    }
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
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519 {
                secret: [0; 32],
                public: [0; 32],
                local: self.local,
            })),
            _ => None,
        }
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder<'a>(local: &'a Local, seed: [u8; 32], prologue: &'a [u8]) -> Builder<'a> {
    let resolver = SeededResolver {
        seed,
        local: (local.secret, local.public),
    };
    Builder::with_resolver(local.params.clone(), Box::new(resolver))
        .local_private_key(&local.secret)
        .prologue(prologue)
}

/// A handshake state on this module's primitives, for tests that pit them
/// against snow's own.
#[cfg(test)]
pub(super) fn test_builder(
    secret: &[u8; 32],
    public: &[u8; 32],
    remote: Option<&[u8; 32]>,
    seed: [u8; 32],
) -> HandshakeState {
    let local = Local {
        id: PeerId([0; 32]),
        secret: *secret,
        public: *public,
        params: PROTOCOL.parse().expect("a valid Noise protocol name"),
    };
    let builder = builder(&local, seed, b"");
    match remote {
        Some(r) => builder.remote_public_key(r).build_initiator(),
        None => builder.build_responder(),
    }
    .expect("IK with the keys it needs")
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
