//! The floor under the harness's CPU per delivery: what receiving many
//! loopback sockets' frames costs a process that does nothing else with
//! them (no WebSocket framing, no parse, no history, no check), so the
//! harness's own figure can be split into "kernel and runtime" and "ours"
//! (docs/performance.md, "Client CPU: the floor under a delivery").
//!
//!     cargo build --release -p harness --example receive_floor
//!     target/release/examples/receive_floor --reader mio --sockets 10000 \
//!         --rate 5000 --fanout 20 --ack-share 0.62 --seconds 20
//!
//! Two processes, so that each one's CPU is its own: this one is the
//! reader (measured), and it starts a copy of itself as the feeder
//! (`--feeder`), which plays the server's part: it accepts the sockets,
//! then writes `rate / fanout` messages a second, each one as one
//! `frame-bytes` write to every socket of a random group of `fanout`
//! (a conversation's fan-out, as the reference server writes it, one
//! `send` per frame), and reads and discards whatever the reader writes
//! back. The reader answers a share of the frames it reads with a 40-byte
//! write (the harness's acks: about 0.6 of a delivery at churn-10k).
//!
//! Readers: `mio` is one thread on epoll with one shared read buffer (the
//! cheapest a Rust client can be); `tokio` is a current-thread runtime
//! with one task and one 2 KiB buffer per socket (the harness's shape
//! without tungstenite and without anything the harness does per frame).
//! The CPU is `getrusage` over `--seconds` after all sockets connected and
//! a warm-up second, divided by the frames read in that window. Loopback
//! only; every loop is bounded by the run's deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the reader writes back for a frame it answers (an ack's size).
const ANSWER: [u8; 40] = [b'a'; 40];
/// Warm-up after the last socket connected, before the window opens.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long the feeder keeps writing past the reader's window.
const FEEDER_SLACK: Duration = Duration::from_secs(3);

#[derive(Parser, Debug, Clone)]
struct Args {
    /// Which reader to measure.
    #[arg(long, value_enum, default_value = "mio")]
    reader: ReaderKind,
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Frames a second over all sockets.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Sockets each message is written to (back to back).
    #[arg(long, default_value_t = 20)]
    fanout: usize,
    #[arg(long, default_value_t = 450)]
    frame_bytes: usize,
    /// Share of frames the reader answers with a 40-byte write.
    #[arg(long, default_value_t = 0.62)]
    ack_share: f64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Internal: play the feeder (the parent starts it).
    #[arg(long, hide = true)]
    feeder: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderKind {
    Mio,
    Tokio,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.sockets == 0 || args.fanout == 0 || args.fanout > args.sockets || args.rate == 0 {
        bail!(
            "need --sockets > 0, --rate > 0 and 0 < --fanout <= --sockets (got {}, {}, {})",
            args.sockets,
            args.rate,
            args.fanout
        );
    }
    if args.frame_bytes == 0 || args.seconds == 0 {
        bail!("--frame-bytes and --seconds must be > 0");
    }
    if !(0.0..=1.0).contains(&args.ack_share) {
        bail!("--ack-share must be within 0..=1, got {}", args.ack_share);
    }
    raise_open_files(args.sockets)?;
    if args.feeder {
        return feed(&args);
    }
    println!("seed {} (replay with --seed {})", args.seed, args.seed);
    let mut feeder = Command::new(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .arg("--feeder")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the feeder")?;
    let mut port_line = String::new();
    {
        let stdout = feeder.stdout.as_mut().context("feeder stdout")?;
        let mut byte = [0u8; 1];
        while stdout.read(&mut byte)? == 1 && byte[0] != b'\n' {
            port_line.push(byte[0] as char);
        }
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", port_line.trim())
        .parse()
        .with_context(|| format!("feeder printed {port_line:?}, not a port"))?;
    let result = match args.reader {
        ReaderKind::Mio => read_mio(&args, addr),
        ReaderKind::Tokio => read_tokio(&args, addr),
    };
    // The feeder exits on its own deadline; wait so its CPU is not cut short.
    let status = feeder.wait()?;
    let window = result?;
    window.print(&args);
    if !status.success() {
        bail!("the feeder failed: {status}");
    }
    Ok(())
}

/// What the reader measured over its window.
struct Window {
    frames: u64,
    user: Duration,
    system: Duration,
    switches: u64,
    reads: u64,
    polls: Option<u64>,
    answers: u64,
}

/// The reader's clock and counters at one instant.
struct Snapshot {
    cpu: CpuTimes,
    frames: u64,
    reads: u64,
    polls: Option<u64>,
    answers: u64,
}

impl Window {
    fn between(start: &Snapshot, end: &Snapshot) -> Window {
        let ((user0, system0, switches0), (user, system, switches)) = (start.cpu, end.cpu);
        Window {
            frames: end.frames - start.frames,
            user: user - user0,
            system: system - system0,
            switches: switches - switches0,
            reads: end.reads - start.reads,
            polls: end.polls.zip(start.polls).map(|(end, start)| end - start),
            answers: end.answers - start.answers,
        }
    }

    fn print(&self, args: &Args) {
        let per_frame = |d: Duration| d.as_secs_f64() * 1e6 / self.frames.max(1) as f64;
        let frames = self.frames.max(1) as f64;
        println!(
            "reader {:?}: {} sockets, {} frames in {} s ({:.0}/s, fan-out {}), {:.2} answers per frame",
            args.reader,
            args.sockets,
            self.frames,
            args.seconds,
            self.frames as f64 / args.seconds as f64,
            args.fanout,
            self.answers as f64 / frames,
        );
        println!(
            "  CPU per frame {:.2} µs (user {:.2}, system {:.2}); per frame: {:.2} reads, {:.2} wake-ups (voluntary context switches){}",
            per_frame(self.user + self.system),
            per_frame(self.user),
            per_frame(self.system),
            self.reads as f64 / frames,
            self.switches as f64 / frames,
            self.polls
                .map(|p| format!(", epoll waits per frame {:.2}", p as f64 / frames))
                .unwrap_or_default(),
        );
    }
}

/// User CPU, system CPU, voluntary context switches.
type CpuTimes = (Duration, Duration, u64);

/// User and system CPU, and voluntary context switches (each one a sleep
/// in `epoll_wait` that a frame ended: the wake-ups).
fn cpu_times() -> CpuTimes {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        tv(usage.ru_utime),
        tv(usage.ru_stime),
        usage.ru_nvcsw as u64,
    )
}

fn raise_open_files(sockets: usize) -> anyhow::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    if (limit.rlim_cur as usize) < sockets + 64 {
        bail!(
            "{sockets} sockets need more open files than the hard limit {}",
            limit.rlim_max
        );
    }
    Ok(())
}

/// The feeder: accept every socket, then write the fan-out on schedule.
fn feed(args: &Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let accept_deadline = Instant::now() + Duration::from_secs(60);
    let mut sockets = Vec::with_capacity(args.sockets);
    listener.set_nonblocking(true)?;
    while sockets.len() < args.sockets {
        if Instant::now() > accept_deadline {
            bail!(
                "only {} of {} sockets connected in 60 s",
                sockets.len(),
                args.sockets
            );
        }
        match listener.accept() {
            Ok((socket, _)) => {
                socket.set_nodelay(true)?;
                socket.set_nonblocking(true)?;
                sockets.push(socket);
            }
            Err(err) if err.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(err) => return Err(err.into()),
        }
    }
    // The answers are read by a thread waiting in epoll, as a server's
    // runtime does: on loopback the reader's `send` runs this side's TCP
    // receive and wakes this thread, and that wake-up is part of what an
    // ack costs the harness. (Polling them from the writer loop instead
    // made answers look almost free.)
    // Shared, not cloned: a clone per socket would double the open files.
    let sockets = std::sync::Arc::new(sockets);
    let shared = sockets.clone();
    let answers_end = Instant::now()
        + Duration::from_secs(60)
        + WARM_UP
        + Duration::from_secs(args.seconds)
        + FEEDER_SLACK;
    std::thread::spawn(move || drain_answers(&shared, answers_end));
    let frame = vec![b'm'; args.frame_bytes];
    let mut rng = StdRng::seed_from_u64(args.seed);
    let groups = args.sockets / args.fanout;
    let interval = Duration::from_secs_f64(args.fanout as f64 / args.rate as f64);
    let end = Instant::now() + WARM_UP + Duration::from_secs(args.seconds) + FEEDER_SLACK;
    let mut due = Instant::now();
    let mut short_writes = 0u64;
    while due < end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let group = rng.random_range(0..groups);
        for mut socket in &sockets[group * args.fanout..(group + 1) * args.fanout] {
            match socket.write(&frame) {
                Ok(n) if n == frame.len() => {}
                Ok(_) => short_writes += 1,
                Err(err) if err.kind() == ErrorKind::WouldBlock => short_writes += 1,
                // The reader closed its sockets: its window is over.
                Err(_) => return report_short_writes(short_writes),
            }
        }
        due += interval;
    }
    report_short_writes(short_writes)
}

/// The feeder's answer reader: one thread on epoll, reading and dropping
/// what the reader writes back, until `end` (bounded) or an error.
fn drain_answers(sockets: &[std::net::TcpStream], end: Instant) -> std::io::Result<()> {
    use mio::unix::SourceFd;
    use mio::{Events, Interest, Poll, Token};
    use std::os::fd::AsRawFd;

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    for (index, socket) in sockets.iter().enumerate() {
        poll.registry().register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(index),
            Interest::READABLE,
        )?;
    }
    let mut sink = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        poll.poll(&mut events, Some(end - now))?;
        for event in events.iter() {
            let mut socket = &sockets[event.token().0];
            loop {
                match socket.read(&mut sink) {
                    Ok(n) if n == sink.len() => continue,
                    Ok(_) => break,
                    Err(err) if err.kind() == ErrorKind::WouldBlock => break,
                    Err(err) => return Err(err),
                }
            }
        }
    }
}

fn report_short_writes(short_writes: u64) -> anyhow::Result<()> {
    if short_writes > 0 {
        eprintln!("feeder: {short_writes} frames not written whole (socket buffer full)");
    }
    Ok(())
}

fn connect_all(args: &Args, addr: SocketAddr) -> anyhow::Result<Vec<std::net::TcpStream>> {
    let mut sockets = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let socket = std::net::TcpStream::connect(addr).context("connecting to the feeder")?;
        socket.set_nodelay(true)?;
        socket.set_nonblocking(true)?;
        sockets.push(socket);
    }
    Ok(sockets)
}

fn read_mio(args: &Args, addr: SocketAddr) -> anyhow::Result<Window> {
    use mio::net::TcpStream;
    use mio::{Events, Interest, Poll, Token};

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sockets: Vec<(TcpStream, usize)> = Vec::with_capacity(args.sockets);
    for (index, socket) in connect_all(args, addr)?.into_iter().enumerate() {
        let mut socket = TcpStream::from_std(socket);
        poll.registry()
            .register(&mut socket, Token(index), Interest::READABLE)?;
        sockets.push((socket, 0));
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut buf = vec![0u8; 64 * 1024];
    let opens = Instant::now() + WARM_UP;
    let closes = opens + Duration::from_secs(args.seconds);
    let (mut frames, mut reads, mut polls, mut answers) = (0u64, 0u64, 0u64, 0u64);
    let mut start: Option<Snapshot> = None;
    loop {
        let now = Instant::now();
        if start.is_none() && now >= opens {
            start = Some(Snapshot {
                cpu: cpu_times(),
                frames,
                reads,
                polls: Some(polls),
                answers,
            });
        }
        if now >= closes {
            break;
        }
        let next = if start.is_none() { opens } else { closes };
        poll.poll(&mut events, Some(next - now))?;
        polls += 1;
        for event in events.iter() {
            let (socket, partial) = &mut sockets[event.token().0];
            // Edge-triggered: read until a short read (as tokio does, a
            // short read means the buffer was empty; no EAGAIN read).
            loop {
                match socket.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        reads += 1;
                        let got = (*partial + n) / args.frame_bytes;
                        *partial = (*partial + n) % args.frame_bytes;
                        frames += got as u64;
                        for _ in 0..got {
                            if rng.random_bool(args.ack_share) && socket.write(&ANSWER).is_ok() {
                                answers += 1;
                            }
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => {
                        reads += 1;
                        break;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    let end = Snapshot {
        cpu: cpu_times(),
        frames,
        reads,
        polls: Some(polls),
        answers,
    };
    Ok(Window::between(
        &start.context("the window never opened")?,
        &end,
    ))
}

fn read_tokio(args: &Args, addr: SocketAddr) -> anyhow::Result<Window> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    static FRAMES: AtomicU64 = AtomicU64::new(0);
    static READS: AtomicU64 = AtomicU64::new(0);
    static ANSWERS: AtomicU64 = AtomicU64::new(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut tasks = Vec::with_capacity(args.sockets);
        for (index, socket) in connect_all(args, addr)?.into_iter().enumerate() {
            let mut socket = tokio::net::TcpStream::from_std(socket)?;
            let (frame_bytes, share) = (args.frame_bytes, args.ack_share);
            let mut rng = StdRng::seed_from_u64(args.seed ^ index as u64);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut partial = 0usize;
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    READS.fetch_add(1, Ordering::Relaxed);
                    let got = (partial + n) / frame_bytes;
                    partial = (partial + n) % frame_bytes;
                    FRAMES.fetch_add(got as u64, Ordering::Relaxed);
                    for _ in 0..got {
                        if rng.random_bool(share) && socket.write_all(&ANSWER).await.is_ok() {
                            ANSWERS.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(WARM_UP).await;
        let snapshot = || Snapshot {
            cpu: cpu_times(),
            frames: FRAMES.load(Ordering::Relaxed),
            reads: READS.load(Ordering::Relaxed),
            polls: None,
            answers: ANSWERS.load(Ordering::Relaxed),
        };
        let start = snapshot();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        let end = snapshot();
        for task in tasks {
            task.abort();
        }
        Ok(Window::between(&start, &end))
    })
}
