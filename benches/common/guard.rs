//! The CI regression guard: a quick mode of the proxy and replication
//! benches (`KFLIP_BENCH_QUICK=1`) that fails the run when a through-kflip
//! / direct ratio falls far below its target.
//!
//! It asserts ratios measured in the same run, never a time: the floors
//! are loose (about half the target or less) because CI machines are shared
//! and noisy, so only a gross regression (a copy per byte too many, a lost
//! pipelining, a quadratic step) trips it. Built by `cargo test` (debug
//! kflip, the profile CI already has) the floors are lower again than in
//! a release build, since debug code costs kflip more than the broker.

/// Whether the quick mode is on (`KFLIP_BENCH_QUICK=1`).
pub fn quick() -> bool {
    std::env::var("KFLIP_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Whether kflip and this bench are a debug build (`cargo test --bench`):
/// the bench and the kflip binary it starts come from one cargo profile.
pub fn debug_build() -> bool {
    cfg!(debug_assertions)
}

/// A floor: `KFLIP_BENCH_FLOOR_<NAME>` when set, else `release` in a
/// release build and `debug` in a debug one.
pub fn floor(name: &str, release: f64, debug: f64) -> f64 {
    let key = format!("KFLIP_BENCH_FLOOR_{}", name.to_uppercase());
    std::env::var(&key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if debug_build() { debug } else { release })
}

/// The ratios checked against their floors.
#[derive(Default)]
pub struct Guard {
    /// One line per check: (passed, what it says).
    checks: Vec<(bool, String)>,
}

impl Guard {
    /// Checks that `ratio` (through kflip / direct, `detail` says of what)
    /// is at least `floor`. A NaN ratio (nothing measured) fails.
    pub fn check(&mut self, what: &str, ratio: f64, floor: f64, detail: &str) {
        let ok = ratio >= floor;
        let verdict = if ok { "ok" } else { "FAIL" };
        self.checks.push((
            ok,
            format!("{what}: ratio {ratio:.3}, floor {floor:.2}: {verdict} ({detail})"),
        ));
    }

    /// Prints every check and exits with status 1 if one failed (after the
    /// caller has stopped its brokers and kflip); returns if all passed.
    pub fn finish(self, bench: &str) {
        let profile = if debug_build() { "debug" } else { "release" };
        eprintln!("\nkflip bench guard ({bench}, {profile} build):");
        for (_, line) in &self.checks {
            eprintln!("  {line}");
        }
        if self.checks.iter().any(|(ok, _)| !ok) {
            eprintln!(
                "kflip bench guard FAILED: a through-kflip / direct ratio is far below its \
                 target (see the lines above and BENCHMARKS.md, \"Regression guard\")"
            );
            std::process::exit(1);
        }
        if self.checks.is_empty() {
            eprintln!("kflip bench guard FAILED: nothing was measured");
            std::process::exit(1);
        }
        eprintln!("kflip bench guard passed");
    }
}
