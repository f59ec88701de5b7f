//! The encoding primitives every codec shares: a [`Reader`] whose every
//! read is checked, and the writers and readers of addresses and peer
//! records (layouts in the [module documentation](super)).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{DecodeError, EncodeError};
use crate::identity::usable;
use crate::{Peer, PeerId};

/// Size of the smallest peer encoding (IPv4).
pub(crate) const PEER_V4_BYTES: usize = 32 + 1 + 4 + 2;
/// Largest peer encoding: id, IPv6 address, IPv6 relay address.
pub(crate) const PEER_MAX_BYTES: usize = 32 + 19 + 19;
/// Size of the smallest address encoding (IPv4).
pub(crate) const ADDR_V4_BYTES: usize = 1 + 4 + 2;

pub(crate) const FAMILY_V4: u8 = 4;
pub(crate) const FAMILY_V6: u8 = 6;
/// Set in a peer's address family byte when its relay address follows.
pub(crate) const RELAY_FOLLOWS: u8 = 0x80;

/// `value` within `max`, or [`EncodeError::OverLimit`] naming `what`.
pub(crate) fn within(what: &'static str, value: usize, max: usize) -> Result<(), EncodeError> {
    if value > max {
        return Err(EncodeError::OverLimit { what, value, max });
    }
    Ok(())
}

/// A peer record: id, address (flagged when a relay follows), relay.
pub(crate) fn put_peer(out: &mut Vec<u8>, peer: &Peer) {
    out.extend_from_slice(peer.id.as_bytes());
    put_addr(out, &peer.addr, peer.relay.is_some());
    if let Some(relay) = &peer.relay {
        put_addr(out, relay, false);
    }
}

/// An address: family (with [`RELAY_FOLLOWS`] set when a relay address
/// comes next), IP, port.
pub(crate) fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr, relay_follows: bool) {
    let flag = if relay_follows { RELAY_FOLLOWS } else { 0 };
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(FAMILY_V4 | flag);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(FAMILY_V6 | flag);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// A cursor over the input whose every read is checked.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.bytes.get(self.offset..).unwrap_or_default()
    }

    pub(crate) fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            what,
            offset: self.offset,
        }
    }

    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let bytes = self
            .remaining()
            .get(..len)
            .ok_or_else(|| self.truncated(what))?;
        self.offset += len;
        Ok(bytes)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let array = *self
            .remaining()
            .first_chunk::<N>()
            .ok_or_else(|| self.truncated(what))?;
        self.offset += N;
        Ok(array)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.offset;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { what, offset }),
        }
    }

    /// A u8 count of items of at least `min_item_bytes` each, checked
    /// against `max` and against the bytes left, so callers may allocate it.
    pub(crate) fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = usize::from(self.u8(what)?);
        if count > max {
            return Err(DecodeError::OverLimit {
                what,
                value: count,
                max,
            });
        }
        if count * min_item_bytes > self.remaining().len() {
            return Err(self.truncated(what));
        }
        Ok(count)
    }

    pub(crate) fn peer(&mut self, what: &'static str) -> Result<Peer, DecodeError> {
        let id = PeerId(self.array(what)?);
        let (addr, relay_follows) = self.addr_flagged(true)?;
        let relay = if relay_follows {
            Some(self.addr()?)
        } else {
            None
        };
        Ok(Peer { id, addr, relay })
    }

    /// A usable address with no flag.
    pub(crate) fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        Ok(self.addr_flagged(false)?.0)
    }

    /// A usable address; `flag_allowed`: the family byte may carry
    /// [`RELAY_FOLLOWS`].
    pub(crate) fn addr_flagged(
        &mut self,
        flag_allowed: bool,
    ) -> Result<(SocketAddr, bool), DecodeError> {
        let family_offset = self.offset;
        let family = self.u8("address family")?;
        let flagged = family & RELAY_FOLLOWS != 0;
        let ip = match family & !RELAY_FOLLOWS {
            _ if flagged && !flag_allowed => {
                return Err(DecodeError::Invalid {
                    what: "address family",
                    offset: family_offset,
                })
            }
            FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>("IPv4 address")?)),
            FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>("IPv6 address")?)),
            _ => {
                return Err(DecodeError::Invalid {
                    what: "address family",
                    offset: family_offset,
                })
            }
        };
        let port = self.u16("port")?;
        let addr = SocketAddr::new(ip, port);
        if !usable(&addr) {
            return Err(DecodeError::UnusableAddress { addr });
        }
        Ok((addr, flagged))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn peer_id(&mut self, what: &'static str) -> Result<PeerId, DecodeError> {
        Ok(PeerId(self.array(what)?))
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining().len() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

/// Proptest strategies the codecs' property tests share.
#[cfg(test)]
pub(crate) mod strategy {
    use std::net::{SocketAddrV4, SocketAddrV6};

    use proptest::prelude::*;

    use super::*;

    pub(crate) fn peer_id() -> impl Strategy<Value = PeerId> {
        any::<[u8; 32]>().prop_map(PeerId)
    }

    /// Usable addresses, v4 and v6.
    pub(crate) fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))),
        ]
        .prop_filter("usable address", usable)
    }

    /// Peers with and without a relay.
    pub(crate) fn peer() -> impl Strategy<Value = Peer> {
        (peer_id(), addr(), proptest::option::of(addr())).prop_map(|(id, addr, relay)| Peer {
            id,
            addr,
            relay,
        })
    }

    /// The encoded size of an address.
    pub(crate) fn addr_bytes(addr: &SocketAddr) -> usize {
        if addr.is_ipv4() {
            7
        } else {
            19
        }
    }

    /// The encoded size of a peer record.
    pub(crate) fn peer_bytes(peer: &Peer) -> usize {
        32 + addr_bytes(&peer.addr) + peer.relay.as_ref().map_or(0, addr_bytes)
    }
}
