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
use crate::proto::kad;
use crate::proto::knowledge::{self, DocState, Stats, Write};
use crate::proto::plumtree::MsgId;
use crate::status::Status;
use crate::store::{Store, StoreError};
use crate::Time;

/// How often, at most, a changed peer cache is saved.
pub const PEER_CACHE_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// A request with an id (the local API's), answered through
    /// [`EventSink::on_answer`] with that id, success or error alike.
    Request(Box<(u64, Request)>),
}

/// What an application asks of the node when it wants each answer by the
/// id it gave ([`Command::Request`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A [`Status`] snapshot.
    Status,
    /// Broadcast a payload to every node; answered with its id.
    Broadcast(Bytes),
    /// Publish on a GossipSub topic; answered with the message id.
    Publish { topic: String, data: Bytes },
    /// Subscribe to a GossipSub topic.
    Subscribe(String),
    /// Leave a GossipSub topic.
    Unsubscribe(String),
    /// A knowledge commons request.
    Knowledge(KnowledgeCommand),
    /// A DHT request, answered once the DHT took it; its outcome comes
    /// later as the node's [`kad::Event::QueryDone`] event.
    Dht(kad::Command),
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Status(Box<Status>),
    /// A broadcast or a GossipSub message left, with this id.
    Sent(MsgId),
    /// Done (a subscription changed; a DHT request was taken).
    Done,
    Knowledge(KnowledgeReply),
}

/// What the application asks of the knowledge commons.
#[derive(Clone, Debug, PartialEq)]
pub enum KnowledgeCommand {
    /// Edit `topic`'s document.
    Write { topic: String, write: Write },
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
    /// The answer to [`Command::Request`] `id`: what was asked for, or why
    /// it was refused.
    fn on_answer(&mut self, now: Time, id: u64, answer: Result<Answer, String>) {
        let _ = (now, id, answer);
    }
}

/// Run `node` on `socket` until a [`Command::Shutdown`], a
/// [`Command::Leave`] (once the goodbyes are sent) or a fatal socket error
/// (in the simulator: the host crashed). A closed command channel is
/// not an end: the node keeps serving the overlay.
///
/// First the node gets what `store` kept (its knowledge updates, its peer
/// cache) and [`Node::start`]s: it joins through its cached peers, then its
/// bootstrap contacts. Each knowledge commit is made durable in `store`
/// before the write is acknowledged ([`KnowledgeReply::Written`]); a write
/// that could not be made durable is answered with an error instead. The
/// peer cache is saved when it changes, at most every
/// [`PEER_CACHE_SAVE_INTERVAL`].
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
    store: impl Store + 'a,
) -> impl Future<Output = io::Result<()>> + 'a {
    drive(node.into(), socket, commands, sink, store)
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
    store: impl Store,
) -> io::Result<()> {
    // Sized by the socket: natively to the largest datagram, in the
    // simulator to each datagram received.
    let mut buf = Vec::new();
    let mut commands_open = true;
    let mut leaving = false;
    let mut now = socket.now();
    let mut keeper = Keeper {
        store,
        peers_saved: None,
        peers_dirty: false,
    };
    keeper.restore(&mut node, now, sink)?;
    node.start(now);
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
        if let Err(e) = keeper.flush(&mut node, now, sink) {
            sink.on_command_error(now, format!("knowledge update not made durable: {e}"));
        }
        if leaving {
            keeper.save_peers(&node, now);
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
            Input::Command(Some(Command::Shutdown)) => {
                keeper.peers_dirty |= node.take_peer_cache_changed();
                keeper.save_peers(&node, now);
                return Ok(());
            }
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
                match knowledge_command(&mut node, now, *cmd, sink, &mut keeper) {
                    Ok(reply) => sink.on_knowledge_reply(now, reply),
                    Err(e) => sink.on_command_error(now, e),
                }
            }
            Input::Command(Some(Command::Request(r))) => {
                let (id, request) = *r;
                let answer = answer(&mut node, now, request, sink, &mut keeper);
                sink.on_answer(now, id, answer);
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

/// The driver's side of the store: what the node kept, loaded once; its
/// commits made durable; its peer cache saved.
struct Keeper<St> {
    store: St,
    /// When the peer cache was last saved.
    peers_saved: Option<Time>,
    /// The cache changed since.
    peers_dirty: bool,
}

impl<St: Store> Keeper<St> {
    /// Load what the store kept into `node`. An update that does not import
    /// is reported and skipped (it stays in the store); a store that cannot
    /// be read ends the driver.
    fn restore(&mut self, node: &mut Node, now: Time, sink: &mut impl EventSink) -> io::Result<()> {
        let stored = self
            .store
            .load()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        node.load_peer_cache(&stored.peers);
        for doc in &stored.documents {
            for update in &doc.updates {
                if let Err(e) = node.knowledge_restore(now, &doc.topic, update) {
                    sink.on_command_error(
                        now,
                        format!("a stored update of {} was not restored: {e}", doc.topic),
                    );
                }
            }
        }
        Ok(())
    }

    /// Hand the node's events to `sink`, making its knowledge commits
    /// durable first (all of them, in one `append`), and save the peer
    /// cache if it is due.
    fn flush(
        &mut self,
        node: &mut Node,
        now: Time,
        sink: &mut impl EventSink,
    ) -> Result<(), StoreError> {
        let mut committed = Vec::new();
        let mut events = Vec::new();
        while let Some(event) = node.poll_event() {
            if let Event::Knowledge(knowledge::Event::Committed { topic, update }) = &event {
                committed.push((topic.clone(), update.clone()));
            }
            events.push(event);
        }
        let durable = if committed.is_empty() {
            Ok(())
        } else {
            self.store.append(&committed)
        };
        for event in events {
            sink.on_event(now, event);
        }
        self.peers_dirty |= node.take_peer_cache_changed();
        let due = self
            .peers_saved
            .is_none_or(|t| now.saturating_sub(t) >= PEER_CACHE_SAVE_INTERVAL);
        if due {
            self.save_peers(node, now);
        }
        durable
    }

    /// Save the peer cache if it changed since it was last saved (at once:
    /// also when the node stops).
    fn save_peers(&mut self, node: &Node, now: Time) {
        if !self.peers_dirty {
            return;
        }
        self.peers_dirty = false;
        self.peers_saved = Some(now);
        if let Err(e) = self.store.save_peers(node.peer_cache()) {
            tracing::warn!("peer cache not saved: {e}");
        }
    }
}

/// Carry out a knowledge command: the reply, or why it failed. A write is
/// answered once durable.
fn knowledge_command<St: Store>(
    node: &mut Node,
    now: Time,
    cmd: KnowledgeCommand,
    sink: &mut impl EventSink,
    keeper: &mut Keeper<St>,
) -> Result<KnowledgeReply, String> {
    match cmd {
        KnowledgeCommand::Write { topic, write } => {
            let created = node
                .knowledge_write(now, &topic, &write)
                .map_err(|e| e.to_string())?;
            // Acknowledged once durable: the commit is in the events.
            match keeper.flush(node, now, sink) {
                Ok(()) => Ok(KnowledgeReply::Written { topic, created }),
                Err(e) => Err(format!(
                    "write to {topic} applied but not made durable: {e}"
                )),
            }
        }
        KnowledgeCommand::Read { topic } => {
            let json = node.knowledge().and_then(|k| k.read(&topic));
            Ok(KnowledgeReply::Document { topic, json })
        }
        KnowledgeCommand::States => {
            let states = node.knowledge().map(|k| k.states()).unwrap_or_default();
            let stats = node.knowledge().map(|k| k.stats()).unwrap_or_default();
            Ok(KnowledgeReply::States { states, stats })
        }
    }
}

/// Carry out a [`Request`]: its answer, or why it was refused.
fn answer<St: Store>(
    node: &mut Node,
    now: Time,
    request: Request,
    sink: &mut impl EventSink,
    keeper: &mut Keeper<St>,
) -> Result<Answer, String> {
    let refused = |e: &dyn std::fmt::Display| e.to_string();
    match request {
        Request::Status => Ok(Answer::Status(Box::new(Status::of(node, now)))),
        Request::Broadcast(payload) => node
            .broadcast(now, payload)
            .map(Answer::Sent)
            .map_err(|e| refused(&e)),
        Request::Publish { topic, data } => node
            .publish(now, &topic, data)
            .map(Answer::Sent)
            .map_err(|e| refused(&e)),
        Request::Subscribe(topic) => node
            .subscribe(now, &topic)
            .map(|()| Answer::Done)
            .map_err(|e| refused(&e)),
        Request::Unsubscribe(topic) => node
            .unsubscribe(now, &topic)
            .map(|()| Answer::Done)
            .map_err(|e| refused(&e)),
        Request::Knowledge(cmd) => {
            knowledge_command(node, now, cmd, sink, keeper).map(Answer::Knowledge)
        }
        Request::Dht(cmd) => {
            if node.dht().is_none() {
                return Err("the DHT is not enabled on this node".into());
            }
            node.dht_command(now, cmd);
            Ok(Answer::Done)
        }
    }
}

enum Input {
    Command(Option<Command>),
    Socket(io::Result<Recv>),
}
