//! The attacker's task on madsim: its own socket on its host, read like
//! the node's driver reads its own (answers to its Sybils come back
//! there), and the attacker's datagrams sent, spoofed ones through the
//! network's `send_spoofed`.

use std::net::SocketAddr;

use grove_netsim::sim::{Recv, Socket};
use madsim::task::JoinHandle;

use super::Attacker;

/// Run `attacker` on the host that owns `addr`, until the host is taken
/// down or the task aborted.
pub fn spawn(addr: SocketAddr, attacker: Attacker) -> JoinHandle<()> {
    madsim::task::spawn_local(Box::pin(run(addr, attacker)))
}

async fn run(addr: SocketAddr, mut attacker: Attacker) {
    let Ok(socket) = Socket::bind(addr) else {
        return;
    };
    let mut buf = Vec::new();
    loop {
        attacker.handle_timeout(socket.now_ns());
        while let Some(out) = attacker.poll_transmit() {
            let sent = match out.spoofed_from {
                None => socket.send_labeled(&out.bytes, out.dst, out.label.0),
                Some(from) => socket.send_spoofed(from, &out.bytes, out.dst, out.label.0),
            };
            match sent {
                Ok(()) => {}
                Err(e) if grove_node::net::is_host_gone(&e) => return,
                Err(_) => attacker.send_error(),
            }
        }
        match socket.recv(&mut buf, attacker.poll_timeout()).await {
            Ok(Recv::Datagram(d)) => {
                attacker.handle_datagram(socket.now_ns(), d.from, &buf[..d.len])
            }
            Ok(Recv::Timeout) => {}
            Err(_) => return,
        }
    }
}
