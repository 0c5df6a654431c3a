//! `watch_load`: the client of the watch fan-out benchmark (`bench/config.sh`).
//!
//! Opens `--watchers` streaming watches on 127.0.0.1, against config-svc
//! (`GET /v1/watch?namespace=bench`, Server-Sent Events) or etcd (its JSON
//! gateway, `POST /v3/watch` on `/bench/k`), then makes `--puts` writes of one
//! key one after another, `--interval-ms` apart, over one kept-alive
//! connection, and records when each write's event reaches each watcher.
//! `--idle-watchers` more watch another namespace (`idle`, etcd `/idle/k`),
//! which no write touches: the cost of watchers that are not concerned.
//! Latency = arrival − the moment just before the write request was sent
//! (so it includes the write itself).
//!
//! Arrival is the kernel's receive time of the event's bytes at the
//! watcher's socket (`SO_TIMESTAMPNS`): when the server's fan-out delivered
//! it, whether or not this client has got round to reading that socket yet,
//! so the client's own queueing does not count against the server. When the
//! client's read returned is reported too. Prints on stdout
//! `REPORT <deliveries> <expected> <p50 ms> <p99 ms> <max ms>` (socket
//! arrival) and `READ …` (the same for read time), and on stderr the CPU time
//! the client and (with `--server-pid`) the server spent per delivery.
//!
//! Built not to be the bottleneck: the watchers are split over `--threads`
//! OS threads, each running a current-thread tokio runtime (no work-stealing
//! traffic between them); a watcher decodes the chunked body in place and
//! finds the write's sequence number (`seq-<n>-` at the start of the value)
//! without parsing JSON. Everything is bounded: watchers, writes, and every
//! wait (`--drain-s` after the last write).
//!
//! On a small machine the client's reads (and the ACKs they send) take the
//! same cores the server fans out on. `--defer-reads-ms D` keeps them out of
//! the way, as if the watchers ran elsewhere: the client threads sleep (not
//! in `epoll_wait`, so the server's writes wake nobody) until D ms after each
//! write, then read for a while; arrival is still the kernel's receive time,
//! so only `READ` moves. D must be below `--interval-ms`.
//!
//! ```text
//! cargo run --release -p config-svc --example watch_load -- mcp  PORT --watchers 1000 --puts 40
//! cargo run --release -p config-svc --example watch_load -- etcd PORT --watchers 1000 --puts 40
//! ```
//! (`mcp` reads the `Authorization` value from `MCP_INTERNAL_AUTH`; raise
//! `ulimit -n` above the number of watchers.)

use std::{
    io::IoSliceMut,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, ValueEnum};
use nix::sys::{
    socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::ReceiveTimestampns},
    time::TimeSpec,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::TcpStream,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// config-svc: SSE `GET /v1/watch?namespace=bench`, writes `PUT /v1/namespaces/bench/keys/k`.
    Mcp,
    /// etcd's JSON gateway: `POST /v3/watch` on `/bench/k`, writes `POST /v3/kv/put`.
    Etcd,
}

/// Watch fan-out latency: many watchers, a few spaced writes.
#[derive(Debug, Parser)]
#[command(name = "watch_load")]
struct Args {
    /// `mcp` (config-svc) or `etcd`.
    #[arg(value_enum)]
    target: Target,
    /// The port on 127.0.0.1.
    port: u16,
    /// Open watches of the written key's namespace (etcd: key range).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    watchers: u32,
    /// Open watches of another namespace (etcd: key range) besides: no write
    /// is theirs, so what they cost the fan-out is what waking them costs.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    idle_watchers: u32,
    /// Writes, one after another.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    puts: u32,
    /// Pause between one write's answer and the next write.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    interval_ms: u64,
    /// Client threads the watchers are spread over.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// How long to wait for the last deliveries after the last write, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    drain_s: u64,
    /// config-svc only: the `Authorization` header value (the gateway's internal credential).
    #[arg(long, env = "MCP_INTERNAL_AUTH", hide_env_values = true)]
    auth: Option<String>,
    /// The server's process id: its CPU time over the writes is reported too.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Read only from this long after each write (0: at once; see the module docs).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    defer_reads_ms: u64,
}

/// Where the run is, for client threads that read in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Opening = 0,
    Writing = 1,
    Draining = 2,
}

/// When the writes happen, shared with the client threads.
struct Gate {
    base: Instant,
    phase: AtomicU8,
    /// Nanoseconds from `base` to the last write, plus one (0: none yet).
    last_sent: AtomicU64,
}

impl Gate {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Opening,
            1 => Phase::Writing,
            _ => Phase::Draining,
        }
    }

    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn sent(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.base).as_nanos() as u64;
        self.last_sent.store(ns + 1, Ordering::Release);
    }

    fn last_sent(&self) -> Option<Duration> {
        match self.last_sent.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns - 1)),
        }
    }

    /// Drive `runtime` only in the windows `[write + defer, write + defer +
    /// window)` while the writes go on; sleep outside them.
    fn read_in_windows(
        &self,
        runtime: &tokio::runtime::Runtime,
        defer: Duration,
        window: Duration,
    ) {
        runtime.block_on(async {
            while self.phase() == Phase::Opening {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        while self.phase() == Phase::Writing {
            let now = self.base.elapsed();
            match self.last_sent() {
                Some(sent) if now < sent + defer => std::thread::sleep(sent + defer - now),
                Some(sent) if now < sent + defer + window => {
                    runtime.block_on(tokio::time::sleep(sent + defer + window - now));
                }
                _ => std::thread::sleep(Duration::from_micros(500)),
            }
        }
    }
}

/// What the watcher threads and the main thread share.
#[derive(Default)]
struct Counters {
    /// Watches whose response head has arrived.
    ready: AtomicUsize,
    /// Watches that failed to open or broke.
    failed: AtomicUsize,
    /// Events received, all watchers together.
    delivered: AtomicUsize,
}

/// When some bytes arrived at a watcher.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// When the client's read returned them.
    read: Instant,
    /// When the kernel received them (wall clock), if it said.
    socket: Option<Duration>,
}

/// One write's event at one watcher.
#[derive(Debug, Clone, Copy)]
struct Arrival {
    write: u32,
    at: Stamp,
}

type Arrivals = Vec<Arrival>;

/// When a write was sent, on both clocks the arrivals are compared with.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    wall: Duration,
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.target == Target::Mcp && args.auth.is_none() {
        return Err("config-svc needs MCP_INTERNAL_AUTH (or --auth)".into());
    }
    if args.defer_reads_ms >= args.interval_ms {
        return Err("--defer-reads-ms must be below --interval-ms".into());
    }
    let request = Arc::new(watch_request(&args, "bench"));
    let idle_request = Arc::new(watch_request(&args, "idle"));
    let counters = Arc::new(Counters::default());
    let stop = CancellationToken::new();
    let gate = Arc::new(Gate {
        base: Instant::now(),
        phase: AtomicU8::new(Phase::Opening as u8),
        last_sent: AtomicU64::new(0),
    });
    let defer = Duration::from_millis(args.defer_reads_ms);
    let window = Duration::from_millis((args.interval_ms - args.defer_reads_ms) / 2);

    // Watchers: an even share per thread, each thread its own runtime.
    let mut threads = Vec::new();
    for t in 0..args.threads {
        let part = |n: u32| n / args.threads + u32::from(t < n % args.threads);
        let (share, idle) = (part(args.watchers), part(args.idle_watchers));
        let (request, counters, stop) = (request.clone(), counters.clone(), stop.clone());
        let idle_request = idle_request.clone();
        let gate = gate.clone();
        let (target, port, puts) = (args.target, args.port, args.puts);
        threads.push(std::thread::spawn(move || -> Result<Arrivals, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            // Timers made outside `block_on` (the windows) need the context.
            let _context = runtime.enter();
            // The watchers run whenever the runtime is driven.
            let mut set = JoinSet::new();
            for i in 0..share + idle {
                let request = if i < share { &request } else { &idle_request }.clone();
                let (counters, stop) = (counters.clone(), stop.clone());
                set.spawn_on(
                    async move {
                        let result = watcher(target, port, &request, &counters, stop, puts).await;
                        if result.is_err() {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                        }
                        result
                    },
                    runtime.handle(),
                );
            }
            if !defer.is_zero() {
                gate.read_in_windows(&runtime, defer, window);
            }
            runtime.block_on(async move {
                let mut arrivals = Vec::with_capacity(share as usize * puts as usize);
                let mut first_error = None;
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok(Ok(got)) => arrivals.extend(got),
                        Ok(Err(e)) => first_error = first_error.or(Some(e.to_string())),
                        Err(e) => first_error = first_error.or(Some(e.to_string())),
                    }
                }
                match first_error {
                    Some(e) if arrivals.is_empty() => Err(e),
                    Some(e) => {
                        eprintln!("watch_load: a watcher failed: {e}");
                        Ok(arrivals)
                    }
                    None => Ok(arrivals),
                }
            })
        }));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(drive(&args, &counters, &gate));
    // Also when the run failed before or during the writes.
    gate.enter(Phase::Draining);
    stop.cancel();
    let mut arrivals = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(Ok(got)) => arrivals.extend(got),
            Ok(Err(e)) => eprintln!("watch_load: watcher thread: {e}"),
            Err(_) => eprintln!("watch_load: a watcher thread panicked"),
        }
    }
    let sent = outcome?;
    report(&args, &sent, &arrivals)
}

/// Wait for every watch, make the writes, wait for the deliveries. Returns
/// when each write was sent.
async fn drive(args: &Args, counters: &Counters, gate: &Gate) -> Result<Vec<Sent>, Error> {
    let watchers = (args.watchers + args.idle_watchers) as usize;
    let opened = wait_until(Duration::from_secs(60), || {
        counters.ready.load(Ordering::Relaxed) + counters.failed.load(Ordering::Relaxed) >= watchers
    })
    .await;
    let ready = counters.ready.load(Ordering::Relaxed);
    if !opened || ready < watchers {
        return Err(
            format!("only {ready} of {watchers} watches opened (raise `ulimit -n`?)").into(),
        );
    }
    // Let the server settle (the last watches' first polls) before writing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu_before = cpu_ms("self");
    let server_pid = args.server_pid.map(|pid| pid.to_string());
    let server_before = server_pid.as_deref().map(cpu_ms);
    let started = Instant::now();
    let mut writes = Writer::connect(args).await?;
    let mut sent = Vec::with_capacity(args.puts as usize);
    gate.enter(Phase::Writing);
    for i in 0..args.puts {
        sent.push(writes.write(i, gate).await?);
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    // The client threads read at once again (for the deliveries still to count).
    gate.enter(Phase::Draining);
    let expected = args.watchers as usize * args.puts as usize;
    wait_until(Duration::from_secs(args.drain_s), || {
        counters.delivered.load(Ordering::Relaxed) >= expected
    })
    .await;
    let (cpu, wall) = (cpu_ms("self") - cpu_before, started.elapsed().as_millis());
    let delivered = counters.delivered.load(Ordering::Relaxed).max(1) as f64;
    eprintln!(
        "watch_load: client CPU over the writes: {cpu} ms in {wall} ms ({:.1} µs per delivery)",
        cpu as f64 * 1000.0 / delivered
    );
    if let (Some(pid), Some(before)) = (server_pid.as_deref(), server_before) {
        let server = cpu_ms(pid).saturating_sub(before);
        eprintln!(
            "watch_load: server CPU over the writes: {server} ms ({:.1} µs per delivery)",
            server as f64 * 1000.0 / delivered
        );
    }
    Ok(sent)
}

/// Poll `done` every 5 ms for at most `limit`; whether it came true.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Print the report lines (and the missing count on stderr).
fn report(args: &Args, sent: &[Sent], arrivals: &[Arrival]) -> Result<(), Error> {
    let expected = args.watchers as usize * args.puts as usize;
    let sent_for = |a: &Arrival| sent.get(a.write as usize);
    let read: Vec<f64> = arrivals
        .iter()
        .filter_map(|a| Some(a.at.read.saturating_duration_since(sent_for(a)?.at)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let socket: Vec<f64> = arrivals
        .iter()
        .filter_map(|a| Some(a.at.socket?.saturating_sub(sent_for(a)?.wall)))
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    if read.is_empty() {
        return Err("no notification arrived".into());
    }
    if read.len() < expected {
        eprintln!(
            "watch_load: {} of {expected} deliveries missing",
            expected - read.len()
        );
    }
    if socket.len() < read.len() {
        eprintln!(
            "watch_load: the kernel stamped {} of {} arrivals; REPORT shows read times",
            socket.len(),
            read.len()
        );
        println!("REPORT {}", percentiles(read.clone(), expected));
    } else {
        println!("REPORT {}", percentiles(socket, expected));
    }
    println!("READ {}", percentiles(read, expected));
    Ok(())
}

/// `<count> <expected> <p50> <p99> <max>` of latencies in ms.
fn percentiles(mut latencies: Vec<f64>, expected: usize) -> String {
    latencies.sort_by(f64::total_cmp);
    let last = latencies.len().saturating_sub(1);
    let pick = |q: f64| latencies.get(((q * latencies.len() as f64) as usize).min(last));
    let ms = |v: Option<&f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
    format!(
        "{} {expected} {} {} {}",
        latencies.len(),
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(latencies.last())
    )
}

/// The request that opens one watch of namespace `ns` (etcd: keys `/{ns}/k…`).
fn watch_request(args: &Args, ns: &str) -> Vec<u8> {
    match args.target {
        Target::Mcp => format!(
            "GET /v1/watch?namespace={ns} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\naccept: text/event-stream\r\n\r\n",
            args.auth.as_deref().unwrap_or_default()
        ),
        Target::Etcd => {
            let body = format!(
                r#"{{"create_request":{{"key":"{}","range_end":"{}"}}}}"#,
                base64(format!("/{ns}/k").as_bytes()),
                base64(format!("/{ns}/l").as_bytes())
            );
            format!(
                "POST /v3/watch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    }
    .into_bytes()
}

/// One watch: open it, then record each write's arrival until `stop`.
async fn watcher(
    target: Target,
    port: u16,
    request: &[u8],
    counters: &Counters,
    stop: CancellationToken,
    puts: u32,
) -> Result<Arrivals, Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    stream.write_all(request).await?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let body_start = loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Err("the watch closed before its response head".into());
        }
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 64 * 1024 {
            return Err("response head too large".into());
        }
    };
    let status_ok = head.starts_with(b"HTTP/1.1 200");
    let chunked = find(
        &head[..body_start].to_ascii_lowercase(),
        b"transfer-encoding: chunked",
    )
    .is_some();
    if !status_ok || !chunked {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(format!(
            "watch answered {} (chunked: {chunked})",
            String::from_utf8_lossy(line)
        )
        .into());
    }
    counters.ready.fetch_add(1, Ordering::Relaxed);

    let mut body = Body::default();
    let mut seen = vec![false; puts as usize];
    let mut arrivals = Vec::with_capacity(puts as usize);
    let mut record = |line: &[u8], at: Stamp| {
        if let Some(write) = sequence_in(target, line).filter(|&i| i < puts)
            && !std::mem::replace(&mut seen[write as usize], true)
        {
            arrivals.push(Arrival { write, at });
            counters.delivered.fetch_add(1, Ordering::Relaxed);
        }
    };
    let now = Stamp {
        read: Instant::now(),
        socket: None,
    };
    body.feed(&head[body_start..], now, &mut record)?;
    // From here on each read also says when the kernel received the bytes.
    setsockopt(&stream, ReceiveTimestampns, &true)?;
    let mut control = nix::cmsg_space!(TimeSpec);
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            ready = stream.readable() => ready?,
        }
        let fd = stream.as_raw_fd();
        let read = stream.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(&mut buffer)];
            let msg = recvmsg::<()>(fd, &mut iov, Some(&mut control), MsgFlags::empty())?;
            let socket = msg.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|cmsg| match cmsg {
                    ControlMessageOwned::ScmTimestampns(at) => Some(Duration::from(at)),
                    _ => None,
                })
            });
            Ok((msg.bytes, socket))
        });
        let (n, socket) = match read {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err("the watch ended early".into());
        }
        let at = Stamp {
            read: Instant::now(),
            socket,
        };
        body.feed(&buffer[..n], at, &mut record)?;
    }
    Ok(arrivals)
}

/// A chunked response body, decoded as it arrives and cut into lines.
#[derive(Default)]
struct Body {
    /// Bytes of the current chunk still to come (then its CRLF).
    remaining: usize,
    /// In a chunk-size line: the size read so far.
    size: Option<usize>,
    /// Whether the size line has ended its digits (extensions follow).
    size_done: bool,
    /// The CRLF after a chunk's data: bytes of it still to skip.
    trailer: usize,
    /// The unfinished line.
    line: Vec<u8>,
}

impl Body {
    /// Decode `raw`, calling `on_line` with each complete body line.
    fn feed(
        &mut self,
        mut raw: &[u8],
        at: Stamp,
        on_line: &mut impl FnMut(&[u8], Stamp),
    ) -> Result<(), Error> {
        while !raw.is_empty() {
            if self.trailer > 0 {
                let skip = self.trailer.min(raw.len());
                self.trailer -= skip;
                raw = &raw[skip..];
            } else if self.remaining > 0 {
                let take = self.remaining.min(raw.len());
                self.lines(&raw[..take], at, on_line);
                self.remaining -= take;
                raw = &raw[take..];
                if self.remaining == 0 {
                    self.trailer = 2;
                }
            } else {
                // The chunk-size line: hex digits, maybe extensions, CRLF.
                let byte = raw[0];
                raw = &raw[1..];
                match byte {
                    b'\n' => {
                        let size = self.size.take().ok_or("empty chunk-size line")?;
                        self.size_done = false;
                        if size == 0 {
                            return Err("the watch body ended".into());
                        }
                        self.remaining = size;
                    }
                    b'\r' => {}
                    _ if self.size_done => {}
                    _ => match (byte as char).to_digit(16) {
                        Some(digit) => {
                            let size = self.size.unwrap_or(0);
                            if size > (1 << 30) {
                                return Err("chunk too large".into());
                            }
                            self.size = Some(size * 16 + digit as usize);
                        }
                        None => self.size_done = true,
                    },
                }
            }
        }
        Ok(())
    }

    /// Append decoded body bytes; call `on_line` for each line they finish.
    fn lines(&mut self, mut data: &[u8], at: Stamp, on_line: &mut impl FnMut(&[u8], Stamp)) {
        while let Some(end) = data.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                on_line(&data[..end], at);
            } else {
                self.line.extend_from_slice(&data[..end]);
                on_line(&self.line, at);
                self.line.clear();
            }
            data = &data[end + 1..];
        }
        self.line.extend_from_slice(data);
    }
}

/// The write number in one body line, if the line carries a write's event.
fn sequence_in(target: Target, line: &[u8]) -> Option<u32> {
    match target {
        // `data: {…"value":"seq-<n>-xxx…"…}`
        Target::Mcp => {
            let rest = line.strip_prefix(b"data:")?;
            number_after(rest, b"seq-")
        }
        // `{"result":{…"events":[{"kv":{…"value":"<base64 of seq-<n>-xxx…>"…`
        Target::Etcd => {
            let at = find(line, b"\"value\":\"")? + 9;
            let encoded = line.get(at..at + 16)?;
            let decoded = unbase64(encoded)?;
            number_after(&decoded, b"seq-")
        }
    }
}

/// The decimal number right after `marker` in `text`.
fn number_after(text: &[u8], marker: &[u8]) -> Option<u32> {
    let at = find(text, marker)? + marker.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (etcd's JSON gateway encodes keys and values so).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode whole 4-character groups of base64 (no padding expected).
fn unbase64(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for group in text.chunks_exact(4) {
        let mut n = 0u32;
        for &c in group {
            n = n << 6 | BASE64.iter().position(|&b| b == c)? as u32;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    Some(out)
}

/// The writes, over one kept-alive connection.
struct Writer {
    stream: TcpStream,
    target: Target,
    auth: String,
    buffer: Vec<u8>,
}

impl Writer {
    async fn connect(args: &Args) -> Result<Self, Error> {
        let stream = TcpStream::connect(("127.0.0.1", args.port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            target: args.target,
            auth: args.auth.clone().unwrap_or_default(),
            buffer: vec![0u8; 64 * 1024],
        })
    }

    /// Write number `i` (a 1 KiB value starting `seq-<i>-`); returns the
    /// moment just before the request was sent.
    async fn write(&mut self, i: u32, gate: &Gate) -> Result<Sent, Error> {
        let value = format!("seq-{i}-{}", "x".repeat(1000));
        let request = match self.target {
            Target::Mcp => {
                let body = format!(r#"{{"value":"{value}"}}"#);
                format!(
                    "PUT /v1/namespaces/bench/keys/k HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    self.auth,
                    body.len()
                )
            }
            Target::Etcd => {
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    base64(b"/bench/k"),
                    base64(value.as_bytes())
                );
                format!(
                    "POST /v3/kv/put HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        let sent = Sent {
            at: Instant::now(),
            wall: SystemTime::now().duration_since(UNIX_EPOCH)?,
        };
        gate.sent(sent.at);
        self.stream.write_all(request.as_bytes()).await?;
        self.read_response(i).await?;
        Ok(sent)
    }

    /// Read one response (a `Content-Length` or chunked body) and check it is 2xx.
    async fn read_response(&mut self, i: u32) -> Result<(), Error> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(remaining, self.stream.read(&mut self.buffer))
                .await
                .map_err(|_| format!("write {i}: no answer within 10 s"))??;
            if n == 0 {
                return Err(format!("write {i}: the connection closed").into());
            }
            got.extend_from_slice(&self.buffer[..n]);
            let Some(end) = find(&got, b"\r\n\r\n") else {
                continue;
            };
            let head = got[..end].to_ascii_lowercase();
            let complete = match content_length(&head) {
                Some(length) => got.len() >= end + 4 + length,
                None => got.ends_with(b"0\r\n\r\n"),
            };
            if !complete {
                continue;
            }
            let status: u16 = std::str::from_utf8(head.get(9..12).unwrap_or_default())?.parse()?;
            if !(200..300).contains(&status) {
                return Err(format!("write {i} answered {status}").into());
            }
            return Ok(());
        }
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    let at = find(head, b"content-length:")? + 15;
    let text = head[at..].split(|&b| b == b'\r').next()?;
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// A process's CPU time so far (user + system, all its threads), from
/// `/proc/{pid}/stat` (`self`: this one).
fn cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the name);
    // /proc counts in USER_HZ, 100 per second on Linux.
    (ticks(11) + ticks(12)) * 10
}
