//! The driver: the only async code of the node. One task owns the socket,
//! the node's deadline and the command channel, and feeds the sans-IO
//! [`Node`]. Natively it runs on tokio; under `--cfg madsim` the same code
//! runs on madsim with the simulator's virtual socket.

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::net::{self, Recv, Socket};
use crate::node::{Event, Node};
use crate::proto::knowledge::{DocState, Stats, Write};
use crate::Time;

/// Commands the application sends to a running node.
///
/// Kept small (40 bytes): a tokio channel allocates its first block of 32
/// slots when it is created, and a simulation holds one channel per host.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Broadcast a payload to every node.
    Broadcast(Bytes),
    /// Join (again) through a contact.
    Join(SocketAddr),
    /// Open a path to a peer known by its advertised record.
    Connect(Box<crate::Peer>),
    /// Subscribe to a GossipSub topic.
    Subscribe(String),
    /// Publish on a GossipSub topic: (topic, data).
    Publish(Box<(String, Bytes)>),
    /// A DHT request.
    Dht(Box<crate::proto::kad::Command>),
    /// Leave the overlay gracefully (neighbours are told), then stop;
    /// [`run`] returns `Ok(())` once the goodbyes are sent.
    Leave,
    /// Stop the driver at once; [`run`] returns `Ok(())`.
    Shutdown,
    /// A knowledge commons request; answered through
    /// [`EventSink::on_knowledge_reply`] (and, for an edit, the node's
    /// `Committed` event) or [`EventSink::on_command_error`].
    Knowledge(Box<KnowledgeCommand>),
}

/// What the application asks of the knowledge commons.
#[derive(Clone, Debug, PartialEq)]
pub enum KnowledgeCommand {
    /// Edit `topic`'s document.
    Write { topic: String, write: Write },
    /// Re-import an update this node committed in an earlier life.
    Restore { topic: String, update: Bytes },
    /// Read `topic`'s document as JSON.
    Read { topic: String },
    /// Report every document's state (for checks from outside).
    States,
}

/// The answer to a [`KnowledgeCommand`].
#[derive(Clone, Debug, PartialEq)]
pub enum KnowledgeReply {
    /// An edit was committed; `created`: the id of the tree node it added.
    Written {
        topic: String,
        created: Option<String>,
    },
    /// `topic`'s document (`None`: not held).
    Document {
        topic: String,
        json: Option<serde_json::Value>,
    },
    /// Every document's state, and the commons' counters.
    States { states: Vec<DocState>, stats: Stats },
}

/// Where the driver takes commands from: natively a tokio channel; the
/// simulator has its own single-threaded queue (a tokio channel allocates
/// 32 slots up front, and one per host adds up over 100,000 hosts).
pub trait Commands {
    /// As [`mpsc::Receiver::poll_recv`]: the next command, `Ready(None)`
    /// once every sender is gone and nothing is left, or `Pending` with
    /// the task's waker kept for the next send.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>>;
}

impl Commands for mpsc::Receiver<Command> {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        mpsc::Receiver::poll_recv(self, cx)
    }
}

/// Where the driver reports what the node does.
pub trait EventSink {
    /// `event` happened at `now`.
    fn on_event(&mut self, now: Time, event: Event);
    /// A broadcast command failed (e.g. payload too large).
    fn on_command_error(&mut self, now: Time, error: String) {
        let _ = (now, error);
    }
    /// A knowledge command was carried out.
    fn on_knowledge_reply(&mut self, now: Time, reply: KnowledgeReply) {
        let _ = (now, reply);
    }
}

/// Run `node` on `socket` until a [`Command::Shutdown`], a
/// [`Command::Leave`] (once the goodbyes are sent) or a fatal socket error
/// (in the simulator: the host crashed). A closed command channel is
/// not an end: the node keeps serving the overlay.
///
/// The node's state is on the heap (given boxed, or boxed here) before the
/// future is built: a task's future is stored by value (madsim's spawn
/// wraps it in one more future that holds it twice), and an `async fn`
/// keeps both its argument and the local it moves into inline, so an
/// inline `Node` (kilobytes) would be paid for several times per task,
/// 100,000 times in a large simulation.
pub fn run<'a, S: EventSink>(
    node: impl Into<Box<Node>>,
    socket: Socket,
    commands: impl Commands + 'a,
    sink: &'a mut S,
) -> impl Future<Output = io::Result<()>> + 'a {
    drive(node.into(), socket, commands, sink)
}

thread_local! {
    /// The send buffer, lent to a driver for each burst of sends. In the
    /// simulator a send never suspends, so all the thread's nodes share
    /// one buffer instead of holding one each (100,000 in a large run);
    /// natively, a driver whose send suspends leaves the next driver on
    /// the thread an empty buffer to grow.
    static SEND_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

async fn drive(
    mut node: Box<Node>,
    socket: Socket,
    mut commands: impl Commands,
    sink: &mut impl EventSink,
) -> io::Result<()> {
    // Sized by the socket: natively to the largest datagram, in the
    // simulator to each datagram received.
    let mut buf = Vec::new();
    let mut commands_open = true;
    let mut leaving = false;
    let mut now = socket.now();
    loop {
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        let mut out = SEND_BUF.take();
        while let Some(t) = node.poll_transmit(&mut out) {
            let dst = t.dst;
            // A failed send concerns one destination (unreachable, wrong
            // address family, refused by the OS), never the node: only the
            // host itself going away ends the driver.
            if let Err(e) = socket.send_to(&out, dst, t.label).await {
                if net::is_host_gone(&e) {
                    return Err(e);
                }
                tracing::debug!(%dst, "send failed: {e}");
            }
        }
        SEND_BUF.set(out);
        while let Some(event) = node.poll_event() {
            sink.on_event(now, event);
        }
        if leaving {
            return Ok(()); // the goodbyes are sent
        }
        let deadline = node.poll_timeout();
        // Datagrams first: a waiting datagram is handled without polling the
        // command channel, and the channel is still polled whenever the
        // socket has nothing (every wait).
        let input = tokio::select! {
            biased;
            r = socket.recv(&mut buf, deadline) => Input::Socket(r),
            cmd = poll_fn(|cx| commands.poll_recv(cx)), if commands_open => Input::Command(cmd),
        };
        now = socket.now();
        match input {
            Input::Command(None) => commands_open = false,
            Input::Command(Some(Command::Shutdown)) => return Ok(()),
            Input::Command(Some(Command::Leave)) => {
                node.leave(now);
                leaving = true;
            }
            Input::Command(Some(Command::Join(contact))) => node.join(now, contact),
            Input::Command(Some(Command::Connect(peer))) => node.connect(now, *peer),
            Input::Command(Some(Command::Subscribe(topic))) => {
                if let Err(e) = node.subscribe(now, &topic) {
                    sink.on_command_error(now, e.to_string());
                }
            }
            Input::Command(Some(Command::Publish(p))) => {
                let (topic, data) = *p;
                if let Err(e) = node.publish(now, &topic, data) {
                    sink.on_command_error(now, e.to_string());
                }
            }
            Input::Command(Some(Command::Dht(c))) => node.dht_command(now, *c),
            Input::Command(Some(Command::Broadcast(payload))) => {
                if let Err(e) = node.broadcast(now, payload) {
                    sink.on_command_error(now, e.to_string());
                }
            }
            Input::Command(Some(Command::Knowledge(cmd))) => {
                knowledge_command(&mut node, now, *cmd, sink);
            }
            Input::Socket(Ok(Recv::Datagram { len, from })) => {
                // A datagram larger than the limit arrives truncated to
                // `buf`; decoding then rejects it as too long.
                node.handle_datagram(now, from, &buf[..len]);
            }
            Input::Socket(Ok(Recv::Timeout)) => node.handle_timeout(now),
            Input::Socket(Err(e)) if net::is_host_gone(&e) => return Err(e),
            Input::Socket(Err(e)) => tracing::debug!("receive failed: {e}"),
        }
    }
}

fn knowledge_command(node: &mut Node, now: Time, cmd: KnowledgeCommand, sink: &mut impl EventSink) {
    match cmd {
        KnowledgeCommand::Write { topic, write } => match node.knowledge_write(now, &topic, &write)
        {
            Ok(created) => sink.on_knowledge_reply(now, KnowledgeReply::Written { topic, created }),
            Err(e) => sink.on_command_error(now, e.to_string()),
        },
        KnowledgeCommand::Restore { topic, update } => {
            if let Err(e) = node.knowledge_restore(now, &topic, &update) {
                sink.on_command_error(now, e.to_string());
            }
        }
        KnowledgeCommand::Read { topic } => {
            let json = node.knowledge().and_then(|k| k.read(&topic));
            sink.on_knowledge_reply(now, KnowledgeReply::Document { topic, json });
        }
        KnowledgeCommand::States => {
            let states = node.knowledge().map(|k| k.states()).unwrap_or_default();
            let stats = node.knowledge().map(|k| k.stats()).unwrap_or_default();
            sink.on_knowledge_reply(now, KnowledgeReply::States { states, stats });
        }
    }
}

enum Input {
    Command(Option<Command>),
    Socket(io::Result<Recv>),
}
