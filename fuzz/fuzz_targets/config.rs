#![no_main]
//! See `kflip::fuzzing::config` for the input layout and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kflip_fuzz::within_budget(
        data,
        Some(kflip_fuzz::Budget::new(4096, 16 << 20)),
        kflip::fuzzing::config,
    );
});
