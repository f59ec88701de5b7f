//! Port mapping: asking the gateway for a mapping over NAT-PMP
//! ([`super::natpmp`]), renewing it, and what a granted mapping makes of
//! us (public, if its address is).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{is_public_ip, natpmp, Event, Output, Reach, Traversal};
use crate::Time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PortMap {
    Off,
    Asking {
        tries: u8,
        next: Time,
    },
    /// `tries`: renewal requests sent since the last answer.
    Mapped {
        addr: SocketAddr,
        renew_at: Time,
        tries: u8,
    },
    /// No answer, refused, or a mapping on a non-public address.
    Unusable,
}

impl Traversal {
    /// A NAT-PMP answer from the gateway.
    pub fn handle_gateway(&mut self, now: Time, bytes: &[u8]) {
        let Some(response) = natpmp::parse(bytes) else {
            self.event(Event::Rejected {
                from: self.config.gateway.expect("gateway checked by caller"),
                what: "NAT-PMP response",
            });
            return;
        };
        match response {
            natpmp::Response::ExternalAddress { result: 0, ip, .. } => self.mapped_ip = Some(ip),
            natpmp::Response::MapUdp {
                result: 0,
                external_port,
                lifetime_s,
                ..
            } if lifetime_s > 0 => {
                self.mapped_port = Some(external_port);
                let renew = Duration::from_secs(u64::from(lifetime_s) / 2);
                if let PortMap::Mapped { addr, .. } = self.portmap {
                    if addr.port() == external_port {
                        self.portmap = PortMap::Mapped {
                            addr,
                            renew_at: now + renew,
                            tries: 0,
                        };
                        return;
                    }
                    // Renewed on another port: we are reachable elsewhere.
                    self.lose_mapping(now);
                }
                self.portmap = PortMap::Asking {
                    tries: 0,
                    next: now + renew,
                };
            }
            _ => {
                // An error, or lifetime 0 (the gateway dropped the mapping).
                self.lose_mapping(now);
                self.portmap = PortMap::Unusable;
                return;
            }
        }
        if let (Some(ip), Some(port), PortMap::Asking { next, .. }) =
            (self.mapped_ip, self.mapped_port, self.portmap)
        {
            let external = SocketAddr::new(IpAddr::V4(ip), port);
            let public = is_public_ip(external.ip());
            self.event(Event::PortMapping { external, public });
            if public {
                self.portmap = PortMap::Mapped {
                    addr: external,
                    renew_at: next,
                    tries: 0,
                };
                self.reach = Reach::PortMapped;
                self.update_advertised(now);
            } else {
                self.portmap = PortMap::Unusable;
            }
        }
    }

    /// A mapping we advertised is gone: we are no longer public through it;
    /// AutoNAT finds out what we are now.
    fn lose_mapping(&mut self, now: Time) {
        let mapped = matches!(self.portmap, PortMap::Mapped { .. });
        self.portmap = PortMap::Asking {
            tries: 0,
            next: now,
        };
        if mapped && self.reach == Reach::PortMapped {
            self.reach = Reach::Unknown;
            self.confidence = 0;
            self.next_probe = now;
            self.update_advertised(now);
        }
    }

    pub(super) fn portmap_timer(&mut self, now: Time) {
        let (tries, next) = match self.portmap {
            PortMap::Asking { tries, next } => (tries, next),
            PortMap::Mapped {
                renew_at, tries, ..
            } => (tries, renew_at),
            _ => return,
        };
        if next > now {
            return;
        }
        let Some(gateway) = self.config.gateway else {
            return;
        };
        if tries >= 3 {
            // No answer to three requests (RFC 6886 retries 9 times over
            // minutes; a node that joins needs to know sooner). A mapping
            // that can no longer be renewed is gone: the node is no longer
            // public through it.
            self.lose_mapping(now);
            self.portmap = PortMap::Unusable;
            return;
        }
        let lifetime = self.config.mapping_lifetime.as_secs() as u32;
        let port = self.local.port();
        if self.mapped_ip.is_none() {
            self.out.push_back(Output::Bytes(
                gateway,
                natpmp::external_address_request().to_vec(),
            ));
        }
        self.out.push_back(Output::Bytes(
            gateway,
            natpmp::map_udp_request(port, port, lifetime).to_vec(),
        ));
        let backoff = Duration::from_millis(250 << tries);
        match &mut self.portmap {
            PortMap::Mapped {
                renew_at, tries, ..
            } => {
                *renew_at = now + backoff * 4;
                *tries += 1;
            }
            pm => {
                *pm = PortMap::Asking {
                    tries: tries + 1,
                    next: now + backoff,
                }
            }
        }
    }
}
