//! Kiwi's DNS server: the query path ([`Handler`]), the forwarder
//! ([`Forwarder`], hickory's resolver with its cache) and the sockets
//! ([`Server`]).
//!
//! * **UDP**: per listen address, `udp_workers` sockets bound with
//!   `SO_REUSEPORT`, each read by its own thread (the kernel spreads
//!   clients over them, so every core answers). A zone answer is computed
//!   and sent on the thread, with no task or allocation beyond the reply;
//!   a forwarded question becomes a task on the role's tokio runtime,
//!   which sends the reply when the recursor answered (or SERVFAIL at
//!   `forward_timeout`).
//! * **TCP**: hickory-server's [`hickory_server::Server`] (framing, idle
//!   timeout) with [`Handler`] as its `RequestHandler`.
//! * **Records** live in one immutable [`Snapshot`] behind an `ArcSwap`: a
//!   reload builds the next one and swaps it in at once; a query holds the
//!   snapshot it started with, so queries in flight during a reload are
//!   answered from the old records or the new, never half of each.
//! * **EDNS**: answers to EDNS queries carry OPT with a 1232-byte payload
//!   (RFC 9715's safe size) and are cut at the smaller of it and the
//!   client's; without EDNS at 512 bytes. A cut answer has TC set and the
//!   client retries over TCP, where the whole set goes.
//! * **Bad input** never panics: datagrams shorter than a header, longer
//!   than [`MAX_UDP_QUERY`] or that are responses are dropped and counted;
//!   a header followed by garbage gets FORMERR, other opcodes NOTIMP, EDNS
//!   versions above 0 BADVERS, classes other than IN and zone transfers
//!   REFUSED, meta types (OPT, TSIG) FORMERR.

use std::future::Future as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use hickory_proto::op::{
    Edns, Header, HeaderCounts, LowerQuery, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::Resolver;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::{debug, warn};

use super::compile::{no_rrs, rrs, AuthAnswer, Verdict, Zones};
use super::config::ValidKiwi;

/// EDNS payload Kiwi advertises and the largest UDP answer it sends
/// (RFC 9715: avoids IP fragmentation on any path).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Largest UDP answer without EDNS (RFC 1035).
pub const PLAIN_UDP_SIZE: u16 = 512;
/// Longest UDP query accepted: a question with an OPT record fits in a few
/// hundred bytes; past this the datagram is dropped and counted.
pub const MAX_UDP_QUERY: usize = 4096;
/// Idle timeout of a TCP connection.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a UDP thread looks at the stop flag while idle.
const UDP_POLL: Duration = Duration::from_millis(200);

/// Counters of the query path (monotonic since start). Each UDP thread
/// counts in its own shard, on its own cache lines, so threads never
/// contend on a counter; [`Handler::stats`] adds the shards up.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Stats {
    /// Queries received over UDP (dropped ones included).
    pub udp: AtomicU64,
    /// Queries received over TCP.
    pub tcp: AtomicU64,
    /// Answers by code.
    pub noerror: AtomicU64,
    /// NXDOMAIN answers.
    pub nxdomain: AtomicU64,
    /// SERVFAIL answers (recursor failed or timed out).
    pub servfail: AtomicU64,
    /// REFUSED answers (isolation, class, transfers, nothing to forward to).
    pub refused: AtomicU64,
    /// FORMERR answers.
    pub formerr: AtomicU64,
    /// NOTIMP answers.
    pub notimp: AtomicU64,
    /// Other codes (BADVERS).
    pub other: AtomicU64,
    /// UDP answers cut to the client's size (TC set).
    pub truncated: AtomicU64,
    /// Questions sent to the forwarder.
    pub forwarded: AtomicU64,
    /// Forwarded questions not answered within `forward_timeout`.
    pub forward_timeouts: AtomicU64,
    /// Datagrams dropped: shorter than a header.
    pub dropped_short: AtomicU64,
    /// Datagrams dropped: longer than [`MAX_UDP_QUERY`].
    pub dropped_oversized: AtomicU64,
    /// Datagrams dropped: DNS responses (reflection).
    pub dropped_responses: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// See [`Stats::udp`].
    pub udp: u64,
    /// See [`Stats::tcp`].
    pub tcp: u64,
    /// See [`Stats::noerror`].
    pub noerror: u64,
    /// See [`Stats::nxdomain`].
    pub nxdomain: u64,
    /// See [`Stats::servfail`].
    pub servfail: u64,
    /// See [`Stats::refused`].
    pub refused: u64,
    /// See [`Stats::formerr`].
    pub formerr: u64,
    /// See [`Stats::notimp`].
    pub notimp: u64,
    /// See [`Stats::other`].
    pub other: u64,
    /// See [`Stats::truncated`].
    pub truncated: u64,
    /// See [`Stats::forwarded`].
    pub forwarded: u64,
    /// See [`Stats::forward_timeouts`].
    pub forward_timeouts: u64,
    /// See [`Stats::dropped_short`].
    pub dropped_short: u64,
    /// See [`Stats::dropped_oversized`].
    pub dropped_oversized: u64,
    /// See [`Stats::dropped_responses`].
    pub dropped_responses: u64,
}

impl StatsSnapshot {
    /// Every dropped datagram.
    pub fn dropped(&self) -> u64 {
        self.dropped_short + self.dropped_oversized + self.dropped_responses
    }
}

impl std::fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "queries udp {} tcp {}; noerror {} nxdomain {} servfail {} refused {} formerr {} notimp {} other {}; truncated {}; forwarded {} (timeouts {}); dropped {} (short {}, oversized {}, responses {})",
            self.udp,
            self.tcp,
            self.noerror,
            self.nxdomain,
            self.servfail,
            self.refused,
            self.formerr,
            self.notimp,
            self.other,
            self.truncated,
            self.forwarded,
            self.forward_timeouts,
            self.dropped(),
            self.dropped_short,
            self.dropped_oversized,
            self.dropped_responses
        )
    }
}

impl Stats {
    /// Adds this shard's counters to `sum`.
    fn add_to(&self, sum: &mut StatsSnapshot) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        sum.udp += g(&self.udp);
        sum.tcp += g(&self.tcp);
        sum.noerror += g(&self.noerror);
        sum.nxdomain += g(&self.nxdomain);
        sum.servfail += g(&self.servfail);
        sum.refused += g(&self.refused);
        sum.formerr += g(&self.formerr);
        sum.notimp += g(&self.notimp);
        sum.other += g(&self.other);
        sum.truncated += g(&self.truncated);
        sum.forwarded += g(&self.forwarded);
        sum.forward_timeouts += g(&self.forward_timeouts);
        sum.dropped_short += g(&self.dropped_short);
        sum.dropped_oversized += g(&self.dropped_oversized);
        sum.dropped_responses += g(&self.dropped_responses);
    }

    fn count_code(&self, code: ResponseCode) {
        let counter = match code {
            ResponseCode::NoError => &self.noerror,
            ResponseCode::NXDomain => &self.nxdomain,
            ResponseCode::ServFail => &self.servfail,
            ResponseCode::Refused => &self.refused,
            ResponseCode::FormErr => &self.formerr,
            ResponseCode::NotImp => &self.notimp,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The forwarding half: hickory's resolver (UDP, TCP on truncation, a
/// bounded cache) and the bound on one question.
pub struct Forwarder {
    resolver: Resolver<TokioRuntimeProvider>,
    timeout: Duration,
    /// What it was built from (a reload keeps it, and its cache, when these
    /// do not change).
    key: (Vec<SocketAddr>, Duration, u64),
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("recursors", &self.key.0)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the forwarder got for a question.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The code for the client.
    pub code: ResponseCode,
    /// Answer records.
    pub answers: Vec<Record>,
    /// Authority records (the SOA of negative answers).
    pub authorities: Vec<Record>,
}

impl Forwarded {
    fn failed(code: ResponseCode) -> Self {
        Forwarded {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
        }
    }

    /// As an answer to send.
    pub fn answer(&self) -> AuthAnswer<'_> {
        AuthAnswer {
            code: self.code,
            answers: rrs(&self.answers),
            authorities: rrs(&self.authorities),
            additionals: no_rrs(),
        }
    }
}

impl Forwarder {
    /// A forwarder to `kiwi.recursors` (call inside the role's runtime);
    /// `None` without recursors.
    ///
    /// # Errors
    /// hickory refused the configuration.
    pub fn new(kiwi: &ValidKiwi) -> anyhow::Result<Option<Self>> {
        if kiwi.recursors.is_empty() {
            return Ok(None);
        }
        let servers = kiwi
            .recursors
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        let opts = builder.options_mut();
        // Two tries fit in the bound; past it the client gets SERVFAIL.
        opts.timeout = (kiwi.forward_timeout / 2).max(Duration::from_millis(50));
        opts.attempts = 2;
        opts.cache_size = kiwi.cache_entries.max(1);
        opts.ndots = 0;
        opts.preserve_intermediates = true;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.recursion_desired = true;
        let resolver = builder.build().context("kiwi.recursors")?;
        Ok(Some(Forwarder {
            resolver,
            timeout: kiwi.forward_timeout,
            key: Self::key_of(kiwi),
        }))
    }

    fn key_of(kiwi: &ValidKiwi) -> (Vec<SocketAddr>, Duration, u64) {
        (
            kiwi.recursors.clone(),
            kiwi.forward_timeout,
            kiwi.cache_entries,
        )
    }

    /// Whether this forwarder serves `kiwi` as it is.
    pub fn serves(&self, kiwi: &ValidKiwi) -> bool {
        self.key == Self::key_of(kiwi)
    }

    /// Resolves the question of `request` within the bound.
    pub async fn resolve(&self, request: &Request, stats: &Stats) -> Forwarded {
        let Some(query) = the_query(request) else {
            return Forwarded::failed(ResponseCode::FormErr);
        };
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let name = query.original().name().clone();
        let lookup = self.resolver.lookup(name, query.query_type());
        match tokio::time::timeout(self.timeout, lookup).await {
            Ok(Ok(lookup)) => Forwarded {
                code: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: Vec::new(),
            },
            Ok(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => Forwarded {
                code: match none.response_code {
                    ResponseCode::NXDomain => ResponseCode::NXDomain,
                    ResponseCode::NoError => ResponseCode::NoError,
                    _ => ResponseCode::ServFail,
                },
                answers: Vec::new(),
                authorities: none
                    .soa
                    .map(|soa| vec![(*soa).into_record_of_rdata()])
                    .unwrap_or_default(),
            },
            Ok(Err(e)) => {
                debug!("kiwi: forwarding {} failed: {e}", query.name());
                Forwarded::failed(ResponseCode::ServFail)
            }
            Err(_) => {
                stats.forward_timeouts.fetch_add(1, Ordering::Relaxed);
                debug!("kiwi: forwarding {} timed out", query.name());
                Forwarded::failed(ResponseCode::ServFail)
            }
        }
    }
}

/// What every query reads: the zones and the forwarder of one
/// configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// Authoritative zones.
    pub zones: Zones,
    /// The forwarder (none without recursors).
    pub forwarder: Option<Arc<Forwarder>>,
}

/// What the query path decided for one request.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Answer now: the code and records (none for errors).
    Local {
        /// Authoritative (a zone answered).
        authoritative: bool,
        /// The answer.
        answer: AuthAnswer<'a>,
    },
    /// Ask the forwarder.
    Forward(Arc<Forwarder>),
}

/// What the UDP path does with a datagram.
#[derive(Debug)]
pub enum Reply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// Forward this request; the reply goes out later.
    Forward(Box<Request>, Arc<Forwarder>),
    /// Nothing goes back (counted).
    Drop,
}

fn error(code: ResponseCode) -> Decision<'static> {
    Decision::Local {
        authoritative: false,
        answer: empty(code),
    }
}

/// The query path, shared by the UDP threads and the TCP server.
#[derive(Debug)]
pub struct Handler {
    state: ArcSwap<Snapshot>,
    /// Shard 0: TCP and tests; then one per UDP thread.
    shards: Box<[Stats]>,
}

impl Handler {
    /// A handler serving `snapshot`, counting in `shards` shards (at least
    /// one).
    pub fn new(snapshot: Snapshot, shards: usize) -> Self {
        Handler {
            state: ArcSwap::from_pointee(snapshot),
            shards: (0..shards.max(1)).map(|_| Stats::default()).collect(),
        }
    }

    fn shard(&self, shard: usize) -> &Stats {
        &self.shards[shard % self.shards.len()]
    }

    /// Swaps in the next snapshot: every query that starts afterwards
    /// reads it, those in flight finish with the one they hold.
    pub fn swap(&self, snapshot: Snapshot) {
        self.state.store(Arc::new(snapshot));
    }

    /// The snapshot queries read now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// Every counter, all shards added up.
    pub fn stats(&self) -> StatsSnapshot {
        let mut sum = StatsSnapshot::default();
        for shard in self.shards.iter() {
            shard.add_to(&mut sum);
        }
        sum
    }

    /// Decides what `request` gets from `snapshot`.
    pub fn decide<'a>(snapshot: &'a Snapshot, request: &Request) -> Decision<'a> {
        if request.metadata.op_code != OpCode::Query {
            return error(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return error(ResponseCode::BADVERS);
        }
        let Some(query) = the_query(request) else {
            return error(ResponseCode::FormErr);
        };
        if query.query_class() != DNSClass::IN {
            return error(ResponseCode::Refused);
        }
        match query.query_type() {
            RecordType::OPT | RecordType::TSIG | RecordType::SIG => {
                return error(ResponseCode::FormErr)
            }
            RecordType::AXFR | RecordType::IXFR => return error(ResponseCode::Refused),
            _ => {}
        }
        match snapshot
            .zones
            .answer(request.src().ip(), query.name(), query.query_type())
        {
            Verdict::Answer(answer) => Decision::Local {
                authoritative: true,
                answer,
            },
            Verdict::Refused => error(ResponseCode::Refused),
            Verdict::NotOurs => match &snapshot.forwarder {
                Some(forwarder) => Decision::Forward(forwarder.clone()),
                None => error(ResponseCode::Refused),
            },
        }
    }

    /// The UDP path for one datagram from `src`, counted in shard 0.
    pub fn on_datagram(&self, raw: &[u8], src: SocketAddr) -> Reply {
        self.on_datagram_in(0, raw, src)
    }

    /// The UDP path for one datagram from `src`, counted in `shard`: an
    /// answer, a question to forward, or a drop.
    pub fn on_datagram_in(&self, shard: usize, raw: &[u8], src: SocketAddr) -> Reply {
        let stats = self.shard(shard);
        stats.udp.fetch_add(1, Ordering::Relaxed);
        if raw.len() > MAX_UDP_QUERY {
            stats.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            return Reply::Drop;
        }
        let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else {
            stats.dropped_short.fetch_add(1, Ordering::Relaxed);
            return Reply::Drop;
        };
        if header.metadata.message_type == MessageType::Response {
            stats.dropped_responses.fetch_add(1, Ordering::Relaxed);
            return Reply::Drop;
        }
        let request = match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
            Ok(request) => request,
            Err(_) => {
                stats.count_code(ResponseCode::FormErr);
                return Reply::Send(formerr(&header));
            }
        };
        let snapshot = self.state.load();
        match Self::decide(&snapshot, &request) {
            Decision::Local {
                authoritative,
                answer,
            } => Reply::Send(self.encode_udp(stats, &request, authoritative, answer)),
            Decision::Forward(forwarder) => Reply::Forward(Box::new(request), forwarder),
        }
    }

    /// Forwards `request` and encodes the UDP reply, counted in `shard`.
    pub async fn forward_udp(
        &self,
        shard: usize,
        request: &Request,
        forwarder: &Forwarder,
    ) -> Vec<u8> {
        let stats = self.shard(shard);
        let got = forwarder.resolve(request, stats).await;
        self.encode_udp(stats, request, false, got.answer())
    }

    fn encode_udp(
        &self,
        stats: &Stats,
        request: &Request,
        authoritative: bool,
        records: AuthAnswer<'_>,
    ) -> Vec<u8> {
        let code = records.code;
        stats.count_code(code);
        let edns = response_edns(request);
        let max = match &request.edns {
            Some(e) => e.max_payload().clamp(PLAIN_UDP_SIZE, EDNS_PAYLOAD),
            None => PLAIN_UDP_SIZE,
        };
        let meta = metadata(request, code, authoritative);
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            meta,
            records.answers,
            records.authorities,
            no_rrs(),
            records.additionals,
        );
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        match response.destructive_emit(&mut encoder) {
            Ok(info) if !info.truncation => bytes,
            Ok(_) => {
                // Cut: the question, TC and the OPT record only (a partial
                // set would lose OPT, and the client retries over TCP).
                stats.truncated.fetch_add(1, Ordering::Relaxed);
                let mut meta = meta;
                meta.truncation = true;
                let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                    meta,
                    no_rrs(),
                    no_rrs(),
                    no_rrs(),
                    no_rrs(),
                );
                let mut bytes = Vec::with_capacity(512);
                let mut encoder = BinEncoder::new(&mut bytes);
                encoder.set_max_size(max);
                match response.destructive_emit(&mut encoder) {
                    Ok(_) => bytes,
                    Err(_) => header_only(&request.metadata, ResponseCode::ServFail),
                }
            }
            Err(e) => {
                warn!("kiwi: cannot encode an answer: {e}");
                header_only(&request.metadata, ResponseCode::ServFail)
            }
        }
    }
}

/// The one question of `request` (none: FORMERR).
fn the_query(request: &Request) -> Option<&LowerQuery> {
    request.request_info().ok().map(|info| info.query)
}

fn empty(code: ResponseCode) -> AuthAnswer<'static> {
    AuthAnswer {
        code,
        answers: no_rrs(),
        authorities: no_rrs(),
        additionals: no_rrs(),
    }
}

fn metadata(request: &Request, code: ResponseCode, authoritative: bool) -> Metadata {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    metadata.authoritative = authoritative;
    metadata.recursion_available = true;
    metadata
}

/// The OPT record of an answer to `request` (none when it had none).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|_| {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        edns.set_version(0);
        edns
    })
}

/// A header alone: `code`, the request's id and opcode, no sections.
fn header_only(request: &Metadata, code: ResponseCode) -> Vec<u8> {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = code;
    metadata.recursion_available = true;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    let mut encoder = BinEncoder::new(&mut bytes);
    // Twelve bytes into a growable buffer cannot fail.
    let _ = hickory_proto::serialize::binary::BinEncodable::emit(&header, &mut encoder);
    bytes
}

/// FORMERR for a datagram whose header parsed and the rest did not.
fn formerr(header: &Header) -> Vec<u8> {
    header_only(&header.metadata, ResponseCode::FormErr)
}

/// The TCP side: hickory-server hands every framed request here.
#[derive(Debug, Clone)]
pub struct TcpHandler(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let handler = &self.0;
        let stats = handler.shard(0);
        stats.tcp.fetch_add(1, Ordering::Relaxed);
        let snapshot = handler.snapshot();
        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let forwarded;
        let (authoritative, records) = match Handler::decide(&snapshot, request) {
            Decision::Local {
                authoritative,
                answer,
            } => (authoritative, answer),
            Decision::Forward(forwarder) => {
                forwarded = forwarder.resolve(request, stats).await;
                (false, forwarded.answer())
            }
        };
        let code = records.code;
        stats.count_code(code);
        let meta = metadata(request, code, authoritative);
        let response = builder.build(
            meta,
            records.answers,
            records.authorities,
            no_rrs(),
            records.additionals,
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!("kiwi: tcp reply to {} failed: {e}", request.src());
                ResponseInfo::from(Header {
                    metadata: meta,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

/// One UDP socket per worker, bound with `SO_REUSEPORT`.
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(UDP_POLL))?;
    Ok(socket)
}

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The running server: UDP threads, the TCP server and the runtime of the
/// forwarder and TCP tasks.
pub struct Server {
    handler: Arc<Handler>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tcp: Option<hickory_server::Server<TcpHandler>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("udp_threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the runtime and the first snapshot of `kiwi`; nothing listens
    /// yet (see [`Server::listen`]).
    ///
    /// # Errors
    /// The runtime or the forwarder cannot be built.
    pub fn new(kiwi: &ValidKiwi) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kiwi-rt")
            .enable_all()
            .build()
            .context("kiwi: tokio runtime")?;
        let forwarder = {
            let _guard = runtime.enter();
            Forwarder::new(kiwi)?
        };
        let snapshot = Snapshot {
            zones: Zones::compile(kiwi, serial_now()),
            forwarder: forwarder.map(Arc::new),
        };
        Ok(Server {
            handler: Arc::new(Handler::new(
                snapshot,
                1 + kiwi.listen.len() * kiwi.udp_workers,
            )),
            runtime: Some(runtime),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            tcp: None,
        })
    }

    /// The query path.
    pub fn handler(&self) -> &Arc<Handler> {
        &self.handler
    }

    /// Binds every listen address (UDP `udp_workers` times, TCP once) and
    /// starts serving.
    ///
    /// # Errors
    /// An address cannot be bound (in use, not local, no permission).
    pub fn listen(&mut self, kiwi: &ValidKiwi) -> anyhow::Result<()> {
        let runtime = self.runtime.as_ref().context("kiwi: stopped")?;
        let handle = runtime.handle().clone();
        let mut sockets = Vec::new();
        let mut listeners = Vec::new();
        for (i, addr) in kiwi.listen.iter().enumerate() {
            for _ in 0..kiwi.udp_workers {
                sockets.push(
                    udp_socket(*addr).with_context(|| format!("kiwi.listen[{i}]: udp {addr}"))?,
                );
            }
            listeners.push(
                tcp_listener(*addr).with_context(|| format!("kiwi.listen[{i}]: tcp {addr}"))?,
            );
        }
        {
            let _guard = runtime.enter();
            let mut server = hickory_server::Server::new(TcpHandler(self.handler.clone()));
            for listener in listeners {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                server.register_listener(listener, TCP_TIMEOUT, 32);
            }
            self.tcp = Some(server);
        }
        for (n, socket) in sockets.into_iter().enumerate() {
            let socket = Arc::new(socket);
            let handler = self.handler.clone();
            let stop = self.stop.clone();
            let handle = handle.clone();
            let thread = std::thread::Builder::new()
                .name(format!("kiwi-udp{n}"))
                .spawn(move || udp_loop(n + 1, &socket, &handler, &stop, &handle))
                .context("kiwi: udp thread")?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Swaps in the records and forwarder of `kiwi` (the forwarder and its
    /// cache are kept when the recursors, timeout and cache size did not
    /// change).
    ///
    /// # Errors
    /// The new forwarder cannot be built; nothing changed.
    pub fn reload(&self, kiwi: &ValidKiwi) -> anyhow::Result<()> {
        let runtime = self.runtime.as_ref().context("kiwi: stopped")?;
        let current = self.handler.snapshot();
        let forwarder = match &current.forwarder {
            Some(f) if f.serves(kiwi) => Some(f.clone()),
            _ => {
                let _guard = runtime.enter();
                Forwarder::new(kiwi)?.map(Arc::new)
            }
        };
        self.handler.swap(Snapshot {
            zones: Zones::compile(kiwi, serial_now()),
            forwarder,
        });
        Ok(())
    }

    /// Stops every loop (UDP threads within [`UDP_POLL`]) and the runtime.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(tcp) = &self.tcp {
            tcp.shutdown_token().cancel();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.tcp = None;
        if let Some(runtime) = self.runtime.take() {
            // Allowed inside the daemon's own runtime, unlike a drop.
            runtime.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One UDP receive loop, counting in `shard`: takes every waiting
/// datagram in one call ([`super::udp::Batch`]), answers zone names on the
/// spot and sends the answers in one call. A forwarded question is polled
/// once here, inside the runtime's context: a cache hit completes at once
/// and is answered from this thread; only a miss becomes a task.
fn udp_loop(
    shard: usize,
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    stop: &AtomicBool,
    runtime: &tokio::runtime::Handle,
) {
    let _runtime = runtime.enter();
    // One byte more than the longest query accepted, so a longer one shows.
    let mut batch = super::udp::Batch::new(MAX_UDP_QUERY + 1);
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(super::udp::BATCH);
    let oversized = vec![0u8; MAX_UDP_QUERY + 1];
    while !stop.load(Ordering::Relaxed) {
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors of earlier replies surface here: keep going.
                debug!("kiwi: udp receive: {e}");
                continue;
            }
        };
        for i in 0..n {
            let (bytes, cut, src) = batch.get(i);
            let Some(src) = src else { continue };
            // A cut datagram was longer than any query: count it as such.
            let bytes = if cut { &oversized[..] } else { bytes };
            match handler.on_datagram_in(shard, bytes, src) {
                Reply::Send(answer) => replies.push((answer, src)),
                Reply::Forward(request, forwarder) => {
                    let handler = handler.clone();
                    let mut task =
                        Box::pin(
                            async move { handler.forward_udp(shard, &request, &forwarder).await },
                        );
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match task.as_mut().poll(&mut cx) {
                        // From the cache: goes out with this batch.
                        std::task::Poll::Ready(answer) => replies.push((answer, src)),
                        std::task::Poll::Pending => {
                            let socket = socket.clone();
                            runtime.spawn(async move {
                                let answer = task.await;
                                let _ = socket.send_to(&answer, src);
                            });
                        }
                    }
                }
                Reply::Drop => {}
            }
        }
        super::udp::send_all(socket, &replies);
        replies.clear();
    }
}

/// A SOA serial for a snapshot built now: seconds since the epoch, so it
/// grows with every reload.
pub fn serial_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32)
}
