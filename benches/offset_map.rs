//! Offset-map cost as the work grows (the performance issue's "offset-map
//! memory after 10^7 records with a gap every 100 records").
//!
//! Records N source records one acknowledgement at a time, as the engine's
//! delivery callback does, with a gap (a source offset that produced no
//! target record: a transaction marker, a skipped copy) every 100 records,
//! so each 100 records make a new run. Reports, per N: runs held, the
//! memory they take (the `Vec`'s capacity), the checkpoint encoding's size,
//! the time per recorded record and per translation, and the same after the
//! checkpoint's pruning to its most recent 50,000 runs.
//!
//! `cargo bench --bench offset_map` (about 5 s); `KFLIP_BENCH_RECORDS` sets
//! the largest N (default 10,000,000).

use std::time::Instant;

use kflip::offsets::{OffsetMap, SourceOffset, TargetOffset};

const GAP_EVERY: i64 = 100;
/// What `replication::checkpoints` keeps (MAX_RUNS).
const KEEP_RUNS: usize = 50_000;

fn main() {
    let largest: i64 = std::env::var("KFLIP_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    println!("## offset map: one run per {GAP_EVERY} records (a gap every {GAP_EVERY})\n");
    println!("| records | runs | memory | per record | encoded | record ns | translate ns | after pruning to {KEEP_RUNS} runs: memory, encoded |");
    println!("|--------:|-----:|-------:|-----------:|--------:|----------:|-------------:|------------------------------|");
    let mut n = 10_000;
    while n <= largest {
        row(n);
        n *= 10;
    }
}

fn row(records: i64) {
    let mut map = OffsetMap::new();
    let mut target = 0i64;
    let started = Instant::now();
    let mut source = 0i64;
    let mut copied = 0i64;
    while copied < records {
        if source % GAP_EVERY == GAP_EVERY - 1 {
            // A gap: this source offset produced nothing on the target.
            source += 1;
            continue;
        }
        map.record(SourceOffset(source), TargetOffset(target))
            .expect("offsets only grow");
        source += 1;
        target += 1;
        copied += 1;
    }
    let record_ns = started.elapsed().as_nanos() as f64 / records as f64;
    let probes = 1_000_000i64;
    let started = Instant::now();
    let mut sum = 0i64;
    for i in 0..probes {
        let at = (i * 7919) % source.max(1);
        sum = sum.wrapping_add(map.translate(SourceOffset(at)).map_or(0, |t| t.0));
    }
    let translate_ns = started.elapsed().as_nanos() as f64 / probes as f64;
    std::hint::black_box(sum);
    let memory = std::mem::size_of_val(map.runs());
    let encoded = map.encode().len();
    let runs = map.len();
    if runs > KEEP_RUNS {
        let cut = map.runs()[runs - KEEP_RUNS].source;
        map.prune_before(cut);
    }
    let pruned_memory = std::mem::size_of_val(map.runs());
    println!(
        "| {records} | {runs} | {} | {:.2} B | {} | {record_ns:.1} | {translate_ns:.1} | {}, {} |",
        human(memory),
        memory as f64 / records as f64,
        human(encoded),
        human(pruned_memory),
        human(map.encode().len()),
    );
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
