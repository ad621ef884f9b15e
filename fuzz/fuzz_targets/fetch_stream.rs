#![no_main]
//! See `kflip::fuzzing::fetch_stream` for the input layout and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kflip_fuzz::within_budget(
        data,
        Some(kflip_fuzz::Budget::new(64, 64 << 10)),
        kflip::fuzzing::fetch_stream,
    );
});
