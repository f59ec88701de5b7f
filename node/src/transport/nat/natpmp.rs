//! NAT-PMP (RFC 6886) messages: the client side of port mapping.
//!
//! A node behind a home router asks it, on the gateway's UDP port 5351, for
//! its external address (opcode 0) and for a UDP mapping of its port
//! (opcode 1). Requests are fixed-size; responses are parsed totally: any
//! byte string gives a [`Response`] or `None`, never a panic.

use std::net::Ipv4Addr;

/// The port NAT-PMP servers listen on.
pub const SERVER_PORT: u16 = 5351;

/// Request the gateway's external address.
#[must_use]
pub fn external_address_request() -> [u8; 2] {
    [0, 0]
}

/// Request a UDP mapping of `internal_port`, suggesting `external_port`,
/// for `lifetime_s` seconds (0 deletes the mapping).
#[must_use]
pub fn map_udp_request(internal_port: u16, external_port: u16, lifetime_s: u32) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[1] = 1;
    r[4..6].copy_from_slice(&internal_port.to_be_bytes());
    r[6..8].copy_from_slice(&external_port.to_be_bytes());
    r[8..12].copy_from_slice(&lifetime_s.to_be_bytes());
    r
}

/// A gateway's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    ExternalAddress {
        result: u16,
        epoch_s: u32,
        ip: Ipv4Addr,
    },
    MapUdp {
        result: u16,
        epoch_s: u32,
        internal_port: u16,
        external_port: u16,
        lifetime_s: u32,
    },
}

/// Parse a response; `None` for anything that is not one.
#[must_use]
pub fn parse(bytes: &[u8]) -> Option<Response> {
    let u16_at = |i: usize| Some(u16::from_be_bytes(*bytes.get(i..)?.first_chunk::<2>()?));
    let u32_at = |i: usize| Some(u32::from_be_bytes(*bytes.get(i..)?.first_chunk::<4>()?));
    match bytes {
        [0, 128, ..] if bytes.len() == 12 => Some(Response::ExternalAddress {
            result: u16_at(2)?,
            epoch_s: u32_at(4)?,
            ip: Ipv4Addr::from(u32_at(8)?),
        }),
        [0, 129, ..] if bytes.len() == 16 => Some(Response::MapUdp {
            result: u16_at(2)?,
            epoch_s: u32_at(4)?,
            internal_port: u16_at(8)?,
            external_port: u16_at(10)?,
            lifetime_s: u32_at(12)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_and_responses_have_the_rfc_layout() {
        assert_eq!(
            map_udp_request(7000, 7001, 7200),
            [0, 1, 0, 0, 0x1b, 0x58, 0x1b, 0x59, 0, 0, 0x1c, 0x20]
        );
        let resp = [
            0, 129, 0, 0, 0, 0, 0, 5, 0x1b, 0x58, 0x1b, 0x59, 0, 0, 0x1c, 0x20,
        ];
        assert_eq!(
            parse(&resp),
            Some(Response::MapUdp {
                result: 0,
                epoch_s: 5,
                internal_port: 7000,
                external_port: 7001,
                lifetime_s: 7200
            })
        );
        let addr = [0, 128, 0, 2, 0, 0, 0, 1, 198, 51, 100, 7];
        assert_eq!(
            parse(&addr),
            Some(Response::ExternalAddress {
                result: 2,
                epoch_s: 1,
                ip: Ipv4Addr::new(198, 51, 100, 7)
            })
        );
        assert_eq!(parse(&addr[..11]), None);
        assert_eq!(parse(&[1, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse(&bytes);
        }
    }
}
