#![no_main]
//! See `kflip::fuzzing::frame_header` for the input layout and the invariants.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kflip_fuzz::within_budget(
        data,
        Some(kflip_fuzz::Budget::new(64, 2 << 20)),
        kflip::fuzzing::frame_header,
    );
});
