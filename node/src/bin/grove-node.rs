//! `grove-node`: the real daemon. One node on a real UDP socket.
//!
//! - Every line read from stdin is broadcast (at most
//!   [`MAX_PAYLOAD_BYTES`] bytes; longer lines are refused on stderr). End of
//!   stdin does not stop the node unless `--exit-on-eof` is given.
//! - A stdin line that is a JSON object with a `cmd` field is a knowledge
//!   commons command instead (with `--topic` or `[knowledge] enabled`):
//!   `{"cmd":"write","topic":T,"write":{"op":"observe","key":K,"value":V}}`
//!   (ops: `observe`, `tree_add {parent?, label}`, `tree_move {node,
//!   parent?}`, `increment {name, by}`, `set_add {name, item}`),
//!   `{"cmd":"read","topic":T}`, `{"cmd":"subscribe","topic":T}` (then a
//!   `knowledge_changed` line per change of T) and `{"cmd":"states"}`.
//! - stdout is a log of what the node does, one JSON object per line:
//!   `listening`, `session_up`, `neighbor_up`, `neighbor_down`,
//!   `delivered`, `dropped`, `knowledge_written`, `knowledge_document`,
//!   `knowledge_changed`, `knowledge_states`, `knowledge_rejected`,
//!   `error`.
//! - The local API for agents is served ([`grove_node::api`]: HTTP/JSON,
//!   server-sent events, `/metrics`) on `api.sock` in the data directory,
//!   or where `--api unix:PATH` or `--api http:127.0.0.1:PORT` says
//!   (`--no-api`: none); agents should use it rather than stdin.
//! - stderr carries diagnostics (`tracing`, filtered by `RUST_LOG`; default
//!   `info`): human-readable on a terminal, JSON lines otherwise.
//! - Ctrl-C (or SIGTERM) stops the node.
//! - What the node keeps across restarts is in its data directory
//!   (`--data-dir`, see [`grove_node::daemon`]): its identity key, created
//!   on the first start, its knowledge commits (each one durable before it
//!   is acknowledged) and its peer cache, through which it rejoins before
//!   it tries `--bootstrap`. The key is never taken from the command line:
//!   a test that needs a known identity names a file holding its seed in
//!   `GROVE_KEY_SEED_FILE`.
//!
//! This is real-mode-only code: it draws OS entropy and reads stdin, so it
//! is not built for the simulator (`--cfg madsim`), which runs the same
//! [`grove_node::driver::run`] on virtual sockets instead.

#[cfg(madsim)]
fn main() {
    eprintln!("grove-node is the real daemon; build it without --cfg madsim");
    std::process::exit(2);
}

/// Errors (a bad `--config`, a data directory, key file or store that
/// cannot be used, a socket that cannot be bound) end the
/// process with one line on stderr, `grove-node: <what went wrong>`, and
/// exit status 1; never a backtrace.
#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    match daemon::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("grove-node: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(madsim))]
mod daemon {
    use std::collections::BTreeSet;
    use std::io::{self, BufRead, IsTerminal, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use anyhow::{anyhow, bail, Context};
    use bytes::Bytes;
    use clap::Parser;
    use grove_node::api;
    use grove_node::daemon::datadir::{self, DataDir, KEY_SEED_FILE_ENV};
    use grove_node::daemon::RedbStore;
    use grove_node::driver::{self, Command, EventSink, KnowledgeCommand, KnowledgeReply};
    use grove_node::net::Socket;
    use grove_node::node::{BroadcastMode, Config, Event, Node};
    use grove_node::proto::knowledge;
    use grove_node::proto::plumtree::MAX_PAYLOAD_BYTES;
    use grove_node::transport::nat::{
        self, Method, PathKind, Reach, RelayEvent, ReservationOutcome,
    };
    use grove_node::{Identity, PeerId, Time};
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde::{Deserialize, Serialize};
    use tokio::sync::mpsc;

    /// Commands (stdin lines, joins, shutdown) queued for the driver; the
    /// stdin reader waits when it is full.
    const COMMAND_QUEUE_CAPACITY: usize = 64;

    /// A Grove node on a real UDP socket: publishes stdin lines, logs
    /// deliveries as JSON lines on stdout.
    #[derive(Parser, Debug)]
    #[command(name = "grove-node", version, about)]
    struct Args {
        /// UDP address to bind (port 0: any free port; the `listening` line
        /// says which).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        /// Address other peers reach this node at, when it is not the bound
        /// address (e.g. when listening on 0.0.0.0).
        #[arg(long, value_name = "ADDR")]
        advertise: Option<SocketAddr>,
        /// Contact to join the overlay through, as HOST:PORT (repeatable).
        /// The node joins through its cached peers first, then through
        /// these in turn, a round every --bootstrap-retry while its active
        /// view is empty.
        #[arg(long = "bootstrap", value_name = "HOST:PORT")]
        bootstrap: Vec<String>,
        /// How long the active view may stay empty before the next rejoin
        /// round (e.g. "5s", "500ms"; overrides `[rejoin] retry`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        bootstrap_retry: Option<Duration>,
        /// Where the node keeps its identity key, knowledge and peer
        /// cache (created, mode 0700, if missing). Default:
        /// $GROVE_DATA_DIR, else $XDG_DATA_HOME/grove, else
        /// ~/.local/share/grove.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Node settings, a TOML file of `grove_node::node::Config`
        /// (sections `[hyparview]`, `[plumtree]`, `[flood]`, `[nat]`,
        /// `[gossipsub]`, `[dht]`, `[knowledge]`, `[transport]`; durations
        /// such as "500ms"). Every value is checked; an error names the
        /// line, the section and the key.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// How broadcasts travel (overrides `broadcast` in --config).
        #[arg(long, value_name = "MODE", value_parser = parse_broadcast_mode)]
        broadcast_mode: Option<BroadcastMode>,
        /// Stop when stdin ends, after queueing what was read.
        #[arg(long)]
        exit_on_eof: bool,
        /// Hold this knowledge topic's document (repeatable); turns the
        /// knowledge commons on.
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
        /// Serve the local API for agents: `unix:PATH` (a Unix socket, mode
        /// 0600; only this user can connect) or `http:127.0.0.1:PORT`
        /// (loopback only, with the bearer token of --api-token-file; port
        /// 0: any free port, the `api` line says which).
        #[arg(long, value_name = "unix:PATH|http:IP:PORT", value_parser = grove_node::api::Listen::parse)]
        api: Option<grove_node::api::Listen>,
        /// The API's bearer token file for `--api http:...` (default:
        /// `api.token` in the data directory): read, or created with 32
        /// random bytes in hex (mode 0600) when missing. The token is never
        /// taken from the command line.
        #[arg(long, value_name = "FILE")]
        api_token_file: Option<PathBuf>,
        /// Serve no local API (by default it is served on `api.sock` in the
        /// data directory).
        #[arg(long, conflicts_with = "api")]
        no_api: bool,
    }

    /// Topics whose changes are logged (`subscribe` commands), shared by
    /// the stdin reader and the log.
    type Subscriptions = Arc<Mutex<BTreeSet<String>>>;

    /// A knowledge command line on stdin.
    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
    enum StdinCommand {
        Write {
            topic: String,
            write: knowledge::Write,
        },
        Read {
            topic: String,
        },
        Subscribe {
            topic: String,
        },
        States,
    }

    /// A line that is a JSON object with a `cmd` field is a command (or a
    /// malformed one: the error); any other line is a broadcast.
    fn parse_command(line: &[u8]) -> Option<Result<StdinCommand, String>> {
        let value: serde_json::Value = serde_json::from_slice(line).ok()?;
        value.as_object()?.get("cmd")?;
        Some(serde_json::from_value(value).map_err(|e| e.to_string()))
    }

    pub fn main() -> anyhow::Result<()> {
        let args = Args::parse();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Human-readable lines for a person at a terminal; one JSON object
        // per line for a service manager or a log collector.
        let logs = tracing_subscriber::fmt()
            .with_writer(io::stderr)
            .with_env_filter(filter);
        if io::stderr().is_terminal() {
            logs.init();
        } else {
            logs.json().with_ansi(false).init();
        }

        let mut config = match &args.config {
            Some(path) => load_config(path)?,
            None => Config::default(),
        };
        if let Some(mode) = args.broadcast_mode {
            config.broadcast = mode;
        }
        if !args.topics.is_empty() {
            config.knowledge.enabled = true;
            for t in &args.topics {
                if !config.knowledge.topics.contains(t) {
                    config.knowledge.topics.push(t.clone());
                }
            }
            if let Err(e) = config.validate() {
                bail!("--topic: {e}");
            }
        }
        let contacts = args
            .bootstrap
            .iter()
            .map(|contact| resolve(contact, args.listen))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let data_dir = datadir::resolve(args.data_dir.as_deref(), |name| std::env::var_os(name))?;
        let data_dir = DataDir::open(&data_dir)?;
        let seed_file = std::env::var_os(KEY_SEED_FILE_ENV).map(PathBuf::from);
        let identity = data_dir.identity(seed_file.as_deref())?;
        let store = data_dir.open_store()?;

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        // Stdin is read on a plain thread (see `read_stdin`), so returning
        // from here never waits for a blocked read.
        runtime.block_on(serve(args, config, contacts, data_dir, identity, store))
    }

    async fn serve(
        args: Args,
        config: Config,
        contacts: Vec<SocketAddr>,
        data_dir: DataDir,
        identity: Identity,
        store: RedbStore,
    ) -> anyhow::Result<()> {
        let socket = Socket::bind(args.listen)
            .await
            .with_context(|| format!("binding UDP {}", args.listen))?;
        let bound = socket.local_addr().context("reading the bound address")?;
        let mut advertised = args.advertise.unwrap_or(bound);
        if advertised.ip().is_unspecified() {
            // Bound to every interface: the address of the one that routes
            // to the first contact (a connected UDP socket sends nothing).
            if let Some(ip) = contacts.first().and_then(|c| route_source_ip(*c)) {
                advertised.set_ip(ip);
            }
        }
        let mut config = config;
        if config.nat.port_mapping && config.nat.gateway.is_none() {
            config.nat.gateway = default_gateway()
                .map(|gw| SocketAddr::new(IpAddr::V4(gw), nat::natpmp::SERVER_PORT));
        }
        if advertised.ip().is_unspecified() {
            tracing::warn!(
                "advertising {advertised}, which peers cannot reach; give --advertise ADDR"
            );
        }
        if let Some(retry) = args.bootstrap_retry {
            config.rejoin.retry = retry;
        }
        let features = api::Features {
            pubsub: config.gossipsub.enabled,
            dht: config.dht.enabled,
            knowledge: config.knowledge.enabled,
        };
        let mut node = Node::new(&identity, advertised, config, node_rng());
        node.set_bootstrap(&contacts);
        // Bound before the node starts, so that a socket in use or a bad
        // token file stops the daemon with an error naming it.
        // On by default, on the data directory's socket; the token file
        // (for HTTP) is the data directory's too unless named.
        let listen = match (&args.api, args.no_api) {
            (_, true) => None,
            (Some(listen), false) => Some(listen.clone()),
            (None, false) => Some(api::Listen::default_in(data_dir.path())),
        };
        let api = match &listen {
            Some(listen) => {
                let token_file = args
                    .api_token_file
                    .clone()
                    .unwrap_or_else(|| data_dir.path().join(api::TOKEN_FILE));
                node.count_traffic();
                Some(api::bind(listen, &token_file).await?)
            }
            None => None,
        };

        let active_peers = Arc::new(AtomicUsize::new(0));
        let subscriptions = Subscriptions::default();
        let mut sink = JsonLog::new(io::stdout(), Arc::clone(&active_peers));
        sink.subscriptions = Arc::clone(&subscriptions);
        sink.write(&LogLine::Listening {
            addr: bound,
            peer: identity.peer_id().to_string(),
            t_ms: millis(socket.now()),
        });
        tracing::info!(%bound, %advertised, peer = %identity.peer_id(), "listening");

        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_CAPACITY);
        let hub = api.map(|bound_api| {
            let hub = api::Hub::new(commands.clone(), features);
            sink.write(&LogLine::Api {
                listen: bound_api.at.to_string(),
                t_ms: millis(socket.now()),
            });
            tracing::info!(listen = %bound_api.at, "local API listening");
            tokio::spawn(bound_api.serve(Arc::clone(&hub)));
            hub
        });
        let stdin_commands = commands.clone();
        let exit_on_eof = args.exit_on_eof;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_stdin(&stdin_commands, &subscriptions, exit_on_eof))
            .context("starting the stdin reader")?;
        tokio::spawn(shutdown_on_signal(commands));

        let stopped = match hub {
            Some(hub) => {
                let mut sink = api::Sink::new(sink, hub);
                driver::run(node, socket, rx, &mut sink, store).await
            }
            None => driver::run(node, socket, rx, &mut sink, store).await,
        };
        stopped.context("the node stopped")?;
        tracing::info!("stopped");
        Ok(())
    }

    // ---- identity and settings ----

    /// The node's random stream, seeded from OS entropy at every start
    /// (real mode only: the simulator seeds each node from the scenario).
    /// Never from the identity key, which is the same in every life: a
    /// node's draws (Noise ephemeral keys, the Loro peer id of its
    /// knowledge operations in this life, nonces) must differ between
    /// lives, and nothing it sends may be keyed by its secret key.
    fn node_rng() -> ChaCha8Rng {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        ChaCha8Rng::from_seed(seed)
    }

    /// The local address the kernel would send from to reach `to`.
    fn route_source_ip(to: SocketAddr) -> Option<IpAddr> {
        let any: SocketAddr = if to.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = std::net::UdpSocket::bind(any).ok()?;
        probe.connect(to).ok()?;
        Some(probe.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
    }

    /// The IPv4 default gateway from Linux's routing table, for NAT-PMP.
    fn default_gateway() -> Option<Ipv4Addr> {
        let table = std::fs::read_to_string("/proc/net/route").ok()?;
        parse_default_gateway(&table)
    }

    /// The gateway of the default route (destination 0) in the text of
    /// `/proc/net/route` (hex fields in host byte order).
    fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&"00000000") {
                return None;
            }
            let gw = u32::from_str_radix(fields.get(2)?, 16).ok()?;
            (gw != 0).then(|| Ipv4Addr::from(gw.swap_bytes()))
        })
    }

    /// The `--config` file, parsed and checked. Every error names the file,
    /// the line, the section and the key: `node.toml:3: [gossipsub] d:
    /// must be 1 to 64, got 0`.
    fn load_config(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        parse_config(&text).map_err(|e| anyhow!("{}:{e}", path.display()))
    }

    /// A `Config` from TOML, refusing unknown keys, values of the wrong
    /// type and values out of range (which would otherwise panic or
    /// misbehave in `Node::new`). The error starts with the line number.
    fn parse_config(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => {
                let (line, path) = key_at(text, span.start);
                format!("{line}: {}{}", named(&path), one_line(e.message()))
            }
            None => format!(" {}", one_line(e.message())),
        })?;
        config.validate().map_err(|e| {
            let line = line_of(text, &e.path()).map_or(String::new(), |l| format!("{l}:"));
            format!("{line} {e}")
        })?;
        Ok(config)
    }

    /// A parser's message on one line.
    fn one_line(message: &str) -> String {
        message.trim().replace('\n', "; ")
    }

    /// `[section] key: ` for a dotted path, `key: ` for a top-level key.
    fn named(path: &str) -> String {
        match path.rsplit_once('.') {
            Some((section, key)) => format!("[{section}] {key}: "),
            None if path.is_empty() => String::new(),
            None => format!("{key}: ", key = path),
        }
    }

    /// The table path of a `[table]` or `[[array]]` header line.
    fn header(line: &str) -> Option<String> {
        let l = line.trim_start();
        let inner = l.strip_prefix("[[").or_else(|| l.strip_prefix('['))?;
        let inner = &inner[..inner.find(']')?];
        Some(dotted(inner))
    }

    /// The key of a `key = value` line, dotted and unquoted.
    fn key(line: &str) -> Option<String> {
        let l = line.trim_start();
        if l.starts_with('#') || l.starts_with('[') {
            return None;
        }
        Some(dotted(&l[..l.find('=')?])).filter(|k| !k.is_empty())
    }

    /// `a . "b"` as `a.b`.
    fn dotted(key: &str) -> String {
        let parts: Vec<&str> = key.split('.').map(|p| p.trim().trim_matches('"')).collect();
        parts.join(".")
    }

    fn join(table: &str, key: &str) -> String {
        if table.is_empty() {
            key.to_owned()
        } else {
            format!("{table}.{key}")
        }
    }

    /// The line (from 1) and the dotted path of the key at byte `at`: the
    /// key of its line inside the table of the header above, or the header
    /// itself.
    fn key_at(text: &str, at: usize) -> (usize, String) {
        let before = text.get(..at).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let mut table = String::new();
        for l in text.lines().take(line - 1) {
            if let Some(h) = header(l) {
                table = h;
            }
        }
        let this = text.lines().nth(line - 1).unwrap_or("");
        let path = match (header(this), key(this)) {
            (Some(h), _) => h,
            (None, Some(k)) => join(&table, &k),
            (None, None) => table,
        };
        (line, path)
    }

    /// The line (from 1) of the dotted key `path` in TOML written in the
    /// usual style (`[table]` headers, `key = value` lines): the key's own
    /// line, else that of its table's header, else that of the table's
    /// own key (an inline table), and so on up.
    fn line_of(text: &str, path: &str) -> Option<usize> {
        let mut table = String::new();
        for (i, l) in text.lines().enumerate() {
            if let Some(h) = header(l) {
                table = h;
                if table == path {
                    return Some(i + 1);
                }
            } else if key(l).is_some_and(|k| join(&table, &k) == path) {
                return Some(i + 1);
            }
        }
        line_of(text, path.rsplit_once('.')?.0)
    }

    /// `contact` as an address of the same family as the bound socket.
    fn resolve(contact: &str, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        let candidates: Vec<SocketAddr> = contact
            .to_socket_addrs()
            .with_context(|| format!("bootstrap contact `{contact}` (expected HOST:PORT)"))?
            .collect();
        match candidates.iter().find(|a| a.is_ipv4() == listen.is_ipv4()) {
            Some(&addr) => Ok(addr),
            None => bail!(
                "bootstrap contact `{contact}` has no {} address (found {candidates:?})",
                if listen.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
        }
    }

    fn parse_duration(text: &str) -> Result<Duration, String> {
        grove_node::duration::parse(text)
    }

    fn parse_broadcast_mode(text: &str) -> Result<BroadcastMode, String> {
        match text {
            "plumtree" => Ok(BroadcastMode::Plumtree),
            "flood" => Ok(BroadcastMode::Flood),
            other => Err(format!("`{other}`: expected plumtree or flood")),
        }
    }

    // ---- tasks feeding the driver ----

    /// Join through the first contact; whenever the active view is empty
    /// at a check (every `retry_after`), join through the next one, in turn.
    /// With a single contact the node's own re-join suffices.
    async fn shutdown_on_signal(commands: mpsc::Sender<Command>) {
        #[cfg(unix)]
        let terminate = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM: {e}");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        let interrupt = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot watch Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = interrupt => {}
            () = terminate => {}
        }
        // Tell the neighbours (graceful leave), so that they repair their
        // views at once rather than after seconds of silence.
        tracing::info!("leaving the overlay");
        let _ = commands.send(Command::Leave).await;
    }

    /// Broadcast each stdin line. A plain thread, not tokio's stdin: a
    /// blocked read there would hold up the runtime's shutdown.
    fn read_stdin(
        commands: &mpsc::Sender<Command>,
        subscriptions: &Subscriptions,
        exit_on_eof: bool,
    ) {
        let mut input = io::stdin().lock();
        // A knowledge command may be longer than a broadcast payload.
        let max_line = MAX_PAYLOAD_BYTES.max(4096);
        let mut line = Vec::with_capacity(max_line + 1);
        loop {
            match read_line_bounded(&mut input, &mut line, max_line) {
                Ok(Line::Complete) => {
                    let command = match parse_command(&line) {
                        Some(Ok(StdinCommand::Subscribe { topic })) => {
                            subscriptions.lock().expect("not poisoned").insert(topic);
                            continue;
                        }
                        Some(Ok(StdinCommand::Write { topic, write })) => {
                            KnowledgeCommand::Write { topic, write }
                        }
                        Some(Ok(StdinCommand::Read { topic })) => KnowledgeCommand::Read { topic },
                        Some(Ok(StdinCommand::States)) => KnowledgeCommand::States,
                        Some(Err(e)) => {
                            tracing::error!("not a valid command: {e}");
                            continue;
                        }
                        None if line.len() > MAX_PAYLOAD_BYTES => {
                            tracing::error!(
                                "not published: a line of {} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
                                line.len()
                            );
                            continue;
                        }
                        None => {
                            let payload = Bytes::copy_from_slice(&line);
                            if commands.blocking_send(Command::Broadcast(payload)).is_err() {
                                return; // the driver has stopped
                            }
                            continue;
                        }
                    };
                    let command = Command::Knowledge(Box::new(command));
                    if commands.blocking_send(command).is_err() {
                        return; // the driver has stopped
                    }
                }
                Ok(Line::TooLong { len }) => tracing::error!(
                    "not published: a line of {len} bytes is over the {max_line}-byte limit"
                ),
                Ok(Line::Eof) => break,
                Err(e) => {
                    tracing::error!("reading stdin: {e}");
                    break;
                }
            }
        }
        if exit_on_eof {
            let _ = commands.blocking_send(Command::Leave);
        } else {
            tracing::info!("stdin closed; still serving the overlay");
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Line {
        /// `line` holds a whole line, without its `\n` or `\r\n`.
        Complete,
        /// The line had `len` bytes, more than the limit; it was skipped.
        TooLong {
            len: usize,
        },
        Eof,
    }

    /// Read one line into `line`, keeping at most `max + 1` bytes of it in
    /// memory however long it is.
    fn read_line_bounded(
        input: &mut impl BufRead,
        line: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Line> {
        line.clear();
        let mut len = 0usize;
        let mut read_any = false;
        loop {
            let chunk = match input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !read_any {
                    return Ok(Line::Eof);
                }
                break; // a last line without its newline
            }
            read_any = true;
            let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            len += part.len();
            let room = (max + 1).saturating_sub(line.len());
            line.extend_from_slice(&part[..part.len().min(room)]);
            input.consume(used);
            if done {
                break;
            }
        }
        if line.len() == len && line.last() == Some(&b'\r') {
            line.pop();
            len -= 1;
        }
        if len > max {
            Ok(Line::TooLong { len })
        } else {
            Ok(Line::Complete)
        }
    }

    // ---- the log ----

    /// One line of the stdout log.
    #[derive(Serialize)]
    #[serde(tag = "event", rename_all = "snake_case")]
    enum LogLine {
        Listening {
            addr: SocketAddr,
            peer: String,
            t_ms: u64,
        },
        /// The local API is served at `listen` (`unix:PATH` or
        /// `http:IP:PORT`).
        Api {
            listen: String,
            t_ms: u64,
        },
        /// A handshake authenticated `peer` (its identity key): every
        /// datagram with it is sealed from here on.
        SessionUp {
            peer: String,
            t_ms: u64,
        },
        NeighborUp {
            peer: String,
            addr: SocketAddr,
            t_ms: u64,
        },
        NeighborDown {
            peer: String,
            t_ms: u64,
        },
        /// `id` is the first 8 bytes of the message id, in hex; `from` is
        /// `None` at the origin.
        Delivered {
            id: String,
            hops: u16,
            from: Option<String>,
            payload: String,
            t_ms: u64,
        },
        Dropped {
            from: SocketAddr,
            error: String,
            t_ms: u64,
        },
        /// What NAT traversal found out about this node.
        Reachability {
            status: Reach,
            addr: SocketAddr,
            relay: Option<SocketAddr>,
            t_ms: u64,
        },
        /// `status`: `ok`, `expired`, or the relay's refusal (e.g.
        /// `RESOURCE_LIMIT_EXCEEDED`).
        Reservation {
            relay: SocketAddr,
            status: String,
            t_ms: u64,
        },
        /// A path to a peer came up: `kind` direct or relayed, `method` how.
        Path {
            peer: String,
            kind: PathKind,
            method: Method,
            attempt: u8,
            addr: SocketAddr,
            t_ms: u64,
        },
        UpgradeFailed {
            peer: String,
            attempts: u8,
            t_ms: u64,
        },
        PortMapping {
            external: SocketAddr,
            public: bool,
            t_ms: u64,
        },
        /// The relay service at work (reservations and circuits).
        Relay {
            what: String,
            t_ms: u64,
        },
        Rejected {
            from: SocketAddr,
            what: &'static str,
            t_ms: u64,
        },
        /// A knowledge edit was committed (`created`: a new tree node's id).
        KnowledgeWritten {
            topic: String,
            created: Option<String>,
            t_ms: u64,
        },
        /// A document read (`json`: null when the topic is not held).
        KnowledgeDocument {
            topic: String,
            json: Option<serde_json::Value>,
            t_ms: u64,
        },
        /// A subscribed document changed; `version` (hex) is equal on two
        /// nodes exactly when they hold the same operations.
        KnowledgeChanged {
            topic: String,
            version: String,
            local: bool,
            t_ms: u64,
        },
        /// Every document's version and state hash (hex).
        KnowledgeStates {
            states: Vec<DocSummary>,
            t_ms: u64,
        },
        KnowledgeRejected {
            from: String,
            topic: String,
            reason: &'static str,
            t_ms: u64,
        },
        /// A command was refused.
        Error {
            error: String,
            t_ms: u64,
        },
    }

    #[derive(Serialize)]
    struct DocSummary {
        topic: String,
        version: String,
        state: String,
    }

    /// The stdout log: one JSON object per line, flushed per line. Also
    /// counts the active view for the bootstrap fallback.
    struct JsonLog<W: Write> {
        out: W,
        active_peers: Arc<AtomicUsize>,
        /// Set when stdout failed (e.g. its reader went away): the node
        /// keeps serving the overlay without a log.
        broken: bool,
        subscriptions: Subscriptions,
    }

    impl<W: Write> JsonLog<W> {
        fn new(out: W, active_peers: Arc<AtomicUsize>) -> Self {
            JsonLog {
                out,
                active_peers,
                broken: false,
                subscriptions: Subscriptions::default(),
            }
        }

        fn write(&mut self, line: &LogLine) {
            if self.broken {
                return;
            }
            let result = serde_json::to_writer(&mut self.out, line)
                .map_err(io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"))
                .and_then(|()| self.out.flush());
            if let Err(e) = result {
                tracing::warn!("stdout failed, the log stops here: {e}");
                self.broken = true;
            }
        }
    }

    impl<W: Write> EventSink for JsonLog<W> {
        fn on_event(&mut self, now: Time, event: Event) {
            let t_ms = millis(now);
            let line = match event {
                Event::Delivered {
                    id,
                    hops,
                    from,
                    payload,
                } => LogLine::Delivered {
                    id: hex(&id.0[..8]),
                    hops,
                    from: from.as_ref().map(PeerId::to_string),
                    payload: String::from_utf8_lossy(&payload).into_owned(),
                    t_ms,
                },
                Event::NeighborUp(peer) => {
                    self.active_peers.fetch_add(1, Relaxed);
                    LogLine::NeighborUp {
                        peer: peer.id.to_string(),
                        addr: peer.addr,
                        t_ms,
                    }
                }
                Event::Connected { peer } => LogLine::SessionUp {
                    peer: peer.to_string(),
                    t_ms,
                },
                Event::NeighborDown(id) => {
                    // Never below zero, whatever the core reports.
                    let one_less = |n: usize| n.checked_sub(1);
                    let _ = self.active_peers.fetch_update(Relaxed, Relaxed, one_less);
                    LogLine::NeighborDown {
                        peer: id.to_string(),
                        t_ms,
                    }
                }
                Event::Dropped { from, reason } => LogLine::Dropped {
                    from,
                    error: reason.to_string(),
                    t_ms,
                },
                Event::Traversal(e) => traversal_line(e, t_ms),
                // GossipSub is off in the daemon's configuration.
                Event::PubSub(_) => return,
                // The daemon does not run the DHT (its config keeps it off).
                Event::Dht(_) => return,
                Event::Knowledge(knowledge::Event::Changed {
                    topic,
                    version_hash,
                    local,
                }) => {
                    if !self
                        .subscriptions
                        .lock()
                        .expect("not poisoned")
                        .contains(&topic)
                    {
                        return;
                    }
                    LogLine::KnowledgeChanged {
                        topic,
                        version: format!("{version_hash:016x}"),
                        local,
                        t_ms,
                    }
                }
                Event::Knowledge(knowledge::Event::Rejected {
                    from,
                    topic,
                    reason,
                }) => LogLine::KnowledgeRejected {
                    from: from.to_string(),
                    topic,
                    reason,
                    t_ms,
                },
                // Commits are answered by `knowledge_written`; transfers are
                // accounting for the simulator.
                Event::Knowledge(_) => return,
            };
            self.write(&line);
        }

        fn on_command_error(&mut self, now: Time, error: String) {
            tracing::error!("command refused: {error}");
            let t_ms = millis(now);
            self.write(&LogLine::Error { error, t_ms });
        }

        fn on_knowledge_reply(&mut self, now: Time, reply: KnowledgeReply) {
            let t_ms = millis(now);
            let line = match reply {
                KnowledgeReply::Written { topic, created } => LogLine::KnowledgeWritten {
                    topic,
                    created,
                    t_ms,
                },
                KnowledgeReply::Document { topic, json } => {
                    LogLine::KnowledgeDocument { topic, json, t_ms }
                }
                KnowledgeReply::States { states, .. } => LogLine::KnowledgeStates {
                    states: states
                        .into_iter()
                        .map(|s| DocSummary {
                            topic: s.topic,
                            version: format!("{:016x}", s.version_hash),
                            state: format!("{:016x}", s.state_hash),
                        })
                        .collect(),
                    t_ms,
                },
            };
            self.write(&line);
        }
    }

    fn traversal_line(e: nat::Event, t_ms: u64) -> LogLine {
        match e {
            nat::Event::Reachability { reach, advertised } => LogLine::Reachability {
                status: reach,
                addr: advertised.addr,
                relay: advertised.relay,
                t_ms,
            },
            nat::Event::Reservation { relay, outcome } => LogLine::Reservation {
                relay,
                status: match outcome {
                    ReservationOutcome::Ok => "ok".into(),
                    ReservationOutcome::Expired => "expired".into(),
                    ReservationOutcome::Refused(s) => s.name().into(),
                },
                t_ms,
            },
            nat::Event::Path {
                peer,
                kind,
                method,
                attempt,
                addr,
            } => LogLine::Path {
                peer: peer.to_string(),
                kind,
                method,
                attempt,
                addr,
                t_ms,
            },
            nat::Event::UpgradeFailed { peer, attempts } => LogLine::UpgradeFailed {
                peer: peer.to_string(),
                attempts,
                t_ms,
            },
            nat::Event::PortMapping { external, public } => LogLine::PortMapping {
                external,
                public,
                t_ms,
            },
            nat::Event::Relay(r) => LogLine::Relay {
                what: match r {
                    RelayEvent::ReservationAccepted => "reservation accepted".into(),
                    RelayEvent::ReservationRefused(s) => {
                        format!("reservation refused: {}", s.name())
                    }
                    RelayEvent::CircuitOpened => "circuit opened".into(),
                    RelayEvent::CircuitRefused(s) => format!("circuit refused: {}", s.name()),
                    RelayEvent::CircuitClosed { bytes } => {
                        format!("circuit closed after {bytes} bytes")
                    }
                    RelayEvent::FrameRefused => "frame for no circuit refused".into(),
                },
                t_ms,
            },
            nat::Event::Rejected { from, what } => LogLine::Rejected { from, what, t_ms },
        }
    }

    fn millis(t: Time) -> u64 {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
            let mut reader = io::BufReader::with_capacity(4, input);
            let mut line = Vec::new();
            let mut out = Vec::new();
            loop {
                let l = read_line_bounded(&mut reader, &mut line, max).unwrap();
                if l == Line::Eof {
                    return out;
                }
                out.push((l, line.clone()));
            }
        }

        #[test]
        fn lines_are_split_stripped_and_bounded() {
            let got = lines(b"ab\r\n\nabcdefgh\nabcd\r\nxyz", 4);
            assert_eq!(
                got,
                vec![
                    (Line::Complete, b"ab".to_vec()),
                    (Line::Complete, b"".to_vec()),
                    (Line::TooLong { len: 8 }, b"abcde".to_vec()),
                    (Line::Complete, b"abcd".to_vec()),
                    (Line::Complete, b"xyz".to_vec()),
                ]
            );
        }

        #[test]
        fn the_default_gateway_is_read_from_the_routing_table() {
            let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                         eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                         eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n";
            assert_eq!(
                parse_default_gateway(table),
                Some(Ipv4Addr::new(192, 168, 1, 1))
            );
            assert_eq!(parse_default_gateway("Iface\n"), None);
        }

        #[test]
        fn json_lines_with_cmd_are_commands_and_other_lines_broadcasts() {
            assert_eq!(parse_command(b"hello"), None);
            assert_eq!(parse_command(b"{\"note\": 1}"), None);
            assert_eq!(parse_command(b"[1, 2]"), None);
            assert_eq!(
                parse_command(br#"{"cmd":"read","topic":"t"}"#),
                Some(Ok(StdinCommand::Read { topic: "t".into() }))
            );
            let write =
                br#"{"cmd":"write","topic":"t","write":{"op":"increment","name":"votes","by":2}}"#;
            assert_eq!(
                parse_command(write),
                Some(Ok(StdinCommand::Write {
                    topic: "t".into(),
                    write: knowledge::Write::Increment {
                        name: "votes".into(),
                        by: 2.0
                    }
                }))
            );
            assert!(matches!(parse_command(br#"{"cmd":"fly"}"#), Some(Err(_))));
            assert!(parse_config("[knowledge]\nenabled = true\nmax_topics = 0\n").is_err());
        }

        #[test]
        fn config_errors_name_line_section_and_key() {
            let error = |text: &str| parse_config(text).unwrap_err();
            assert_eq!(
                error("[hyparview]\nkeepalive_interval = \"1s\"\n\n[gossipsub]\nenabled = true\nd = 0\n"),
                "6: [gossipsub] d: must be 1 to 64, got 0"
            );
            assert_eq!(
                error("# x\n[plumtree]\nseen_capacity = 0\n"),
                "3: [plumtree] seen_capacity: must be 1 to 1048576, got 0"
            );
            assert_eq!(
                error("[dht]\nk = 0\n"),
                "2: [dht] k: must be 1 to 20, got 0"
            );
            let e = error("[hyparview]\nactive_view_capacity = 1000000000000\n");
            assert!(
                e.starts_with("2: [hyparview] active_view_capacity: must be 1 to 64"),
                "{e}"
            );
            let e = error("[nat.relay]\nmax_circuits = 0\n");
            assert!(e.starts_with("2: [nat.relay] max_circuits: "), "{e}");
            let e = error("[gossipsub.score]\ndecay_interval = \"0s\"\n");
            assert!(
                e.starts_with("2: [gossipsub.score] decay_interval: "),
                "{e}"
            );
            let e = error("[nat]\nrelay = { stop_timeout = 0 }\n");
            assert!(e.starts_with("2: [nat.relay] stop_timeout: "), "{e}");
            let e = error("[transport]\nmax_sessions = 0\n");
            assert!(e.starts_with("2: [transport] max_sessions: "), "{e}");
            // A key left at its default breaks an invariant: its section's line.
            let e = error("\n[hyparview]\nkeepalive_interval = \"10s\"\n");
            assert!(e.starts_with("2: [hyparview] failure_timeout: "), "{e}");
            // Parse errors: the key at the error's line.
            let e = error("[gossipsub]\n\nheartbeat_interval = 1e300\n");
            assert!(e.starts_with("3: [gossipsub] heartbeat_interval: "), "{e}");
            assert!(e.contains("more than 100 years"), "{e}");
            let e = error("[dht]\nk = \"twenty\"\n");
            assert!(e.starts_with("2: [dht] k: invalid type"), "{e}");
            let e = error("[knowledge]\nbogus = 1\n");
            assert!(e.starts_with("2: [knowledge] bogus: unknown field"), "{e}");
            let e = error("broadcast = \"flod\"\n");
            assert!(e.starts_with("1: broadcast: unknown variant"), "{e}");
            let e = error("[nat]\nenabled = tru\n");
            assert!(e.starts_with("2: [nat] enabled: "), "{e}");
        }

        #[test]
        fn config_file_reads_durations_and_refuses_unknown_keys_and_nonsense() {
            let config = parse_config("[hyparview]\nkeepalive_interval = \"200ms\"\n").unwrap();
            let keepalive = config.hyparview.keepalive_interval;
            assert_eq!(keepalive, Duration::from_millis(200));
            assert!(parse_config("[hyparview]\nkeepalive = 1\n").is_err());
            let error = parse_config("[hyparview]\nfailure_timeout = \"10ms\"\n").unwrap_err();
            assert!(error.to_string().contains("failure_timeout"), "{error}");
        }
    }
}
