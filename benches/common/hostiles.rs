//! The hostile process of `benches/hostile.rs`: slow loris, garbage
//! frames, oversize frame headers and stalled SASL logins against one
//! kflip address, each kind in a reconnect loop, until stdin closes. It
//! prints `ready` once every slow loris is connected, and on exit one line
//! of `key=value` counters.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::env_usize;
use super::wire::frame;

/// The longest a hostile waits for kflip to close it; past that it counts
/// the connection as `not_closed` and moves on.
const CLOSE_LIMIT: Duration = Duration::from_secs(30);

/// What the hostiles did.
#[derive(Default)]
struct Stats {
    /// Slow-loris connections that are or were connected.
    loris_up: AtomicU64,
    /// Slow-loris connections kflip closed.
    loris_cut: AtomicU64,
    /// Their summed lifetimes, ms.
    loris_ms: AtomicU64,
    /// Garbage frames sent and answered by a close.
    garbage: AtomicU64,
    /// Oversize frame headers sent and answered by a close.
    oversize: AtomicU64,
    /// Stalled logins kflip closed.
    sasl_cut: AtomicU64,
    /// Their summed lifetimes, ms.
    sasl_ms: AtomicU64,
    /// Stalled logins that got kflip's SCRAM challenge before stalling.
    sasl_challenged: AtomicU64,
    /// Connections kflip did not close within [`CLOSE_LIMIT`].
    not_closed: AtomicU64,
    /// Connects that failed.
    connect_errors: AtomicU64,
}

fn add(c: &AtomicU64, v: u64) {
    c.fetch_add(v, Ordering::Relaxed);
}

/// Reads until the peer closes (or [`CLOSE_LIMIT`]); true if it closed.
async fn until_closed(s: &mut TcpStream, stats: &Stats) -> bool {
    let mut b = [0u8; 512];
    let closed = tokio::time::timeout(CLOSE_LIMIT, async {
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .is_ok();
    if !closed {
        add(&stats.not_closed, 1);
    }
    closed
}

async fn connect(addr: &str, stats: &Stats) -> Option<TcpStream> {
    match TcpStream::connect(addr).await {
        Ok(s) => Some(s),
        Err(_) => {
            add(&stats.connect_errors, 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}

/// Opens a connection, sends nothing, waits to be cut, again.
async fn loris(addr: String, delay: Duration, stats: Arc<Stats>) {
    tokio::time::sleep(delay).await;
    let mut first = true;
    loop {
        let Some(mut s) = connect(&addr, &stats).await else {
            continue;
        };
        if std::mem::take(&mut first) {
            add(&stats.loris_up, 1);
        }
        let t = Instant::now();
        if until_closed(&mut s, &stats).await {
            add(&stats.loris_cut, 1);
            add(&stats.loris_ms, t.elapsed().as_millis() as u64);
        }
    }
}

/// Sends `bytes(i)` on a fresh connection and waits for the close, again.
async fn flood(
    addr: String,
    pause: Duration,
    stats: Arc<Stats>,
    count: fn(&Stats) -> &AtomicU64,
    bytes: impl Fn(u64) -> Vec<u8>,
) {
    let mut i = 0u64;
    loop {
        i += 1;
        if let Some(mut s) = connect(&addr, &stats).await {
            if s.write_all(&bytes(i)).await.is_ok() && until_closed(&mut s, &stats).await {
                add(count(&stats), 1);
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// A 64-byte frame of pseudo-random bytes (random API key, version, body).
fn garbage(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut f = 60i32.to_be_bytes().to_vec();
    f.extend((0..60).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    f
}

/// Reads one response frame.
async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut b = vec![0u8; i32::from_be_bytes(len).clamp(0, 1 << 20) as usize];
    s.read_exact(&mut b).await.ok()?;
    Some(b)
}

/// SaslHandshake, SCRAM client-first, read the challenge, stall until cut.
async fn sasl_stall(addr: String, user: String, stats: Arc<Stats>) {
    let hs =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
    let mut i = 0u64;
    loop {
        i += 1;
        let Some(mut s) = connect(&addr, &stats).await else {
            continue;
        };
        let t = Instant::now();
        let first = SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(format!("n,,n={user},r=hostile{i:016x}")));
        let ok = s.write_all(&frame(&hs, 1, 1)).await.is_ok()
            && read_frame(&mut s).await.is_some()
            && s.write_all(&frame(&first, 1, 2)).await.is_ok()
            && read_frame(&mut s).await.is_some();
        if ok {
            add(&stats.sasl_challenged, 1);
        }
        if until_closed(&mut s, &stats).await {
            add(&stats.sasl_cut, 1);
            add(&stats.sasl_ms, t.elapsed().as_millis() as u64);
        }
    }
}

/// Runs the hostiles against `addr` until stdin closes, then prints the
/// counters and exits.
pub fn run(addr: &str) {
    let loris_n = env_usize("KFLIP_BENCH_LORIS", 200) as u64;
    let each = env_usize("KFLIP_BENCH_HOSTILES", 20);
    let pause = Duration::from_millis(env_usize("KFLIP_BENCH_HOSTILE_PAUSE_MS", 10) as u64);
    let user = std::env::var("KFLIP_BENCH_HOSTILE_USER").unwrap_or_else(|_| "app".into());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stats = Arc::new(Stats::default());
    let start = Instant::now();
    rt.block_on(async {
        // First connects spread over 3 s, so later cuts do not come in waves.
        for i in 0..loris_n {
            let delay = Duration::from_millis(3000 * i / loris_n.max(1));
            tokio::spawn(loris(addr.to_string(), delay, stats.clone()));
        }
        for _ in 0..each {
            tokio::spawn(flood(
                addr.to_string(),
                pause,
                stats.clone(),
                |s| &s.garbage,
                garbage,
            ));
            tokio::spawn(flood(
                addr.to_string(),
                pause,
                stats.clone(),
                |s| &s.oversize,
                |_| vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
            ));
            tokio::spawn(sasl_stall(addr.to_string(), user.clone(), stats.clone()));
        }
        // Every slow loris connected, or 20 s (then the counters show it).
        while stats.loris_up.load(Ordering::Relaxed) < loris_n
            && start.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!("ready");
        std::io::stdout().flush().expect("stdout");
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("stdin watcher");
    });
    let secs = start.elapsed().as_secs_f64();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
    let mean_s = |ms: &AtomicU64, n: &AtomicU64| get(ms) / get(n).max(1.0) / 1e3;
    println!(
        "loris_up={} loris_cut/s={:.1} loris_life_s={:.2} garbage/s={:.1} oversize/s={:.1} \
         sasl_challenged/s={:.1} sasl_cut/s={:.1} sasl_life_s={:.2} not_closed={} connect_errors={}",
        get(&stats.loris_up),
        get(&stats.loris_cut) / secs,
        mean_s(&stats.loris_ms, &stats.loris_cut),
        get(&stats.garbage) / secs,
        get(&stats.oversize) / secs,
        get(&stats.sasl_challenged) / secs,
        get(&stats.sasl_cut) / secs,
        mean_s(&stats.sasl_ms, &stats.sasl_cut),
        get(&stats.not_closed),
        get(&stats.connect_errors),
    );
    std::io::stdout().flush().expect("stdout");
    // The tasks are endless loops: leave without waiting for them.
    std::process::exit(0);
}
