#![no_main]
//! See `kflip::fuzzing::response_rewrite` for the input layout and the
//! invariants. No allocation budget: the generated codec sizes arrays from
//! their wire count before reading them (see docs/fuzzing.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kflip_fuzz::within_budget(data, None, kflip::fuzzing::response_rewrite);
});
