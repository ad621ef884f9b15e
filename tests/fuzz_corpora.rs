//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`) through
//! the fuzz targets' entry functions, so `cargo test` on stable, without
//! cargo-fuzz, checks every input the fuzzers kept. `KFLIP_FUZZ_INPUT=path`
//! with `KFLIP_FUZZ_TARGET=name` replays one file instead (a crash artifact).

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn replay(target: &str, entry: fn(&[u8]), files: &[PathBuf]) {
    kflip::fuzzing::warm_up();
    for path in files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("{target}: {}", path.display());
        entry(&data);
    }
}

#[test]
fn every_corpus_replays() {
    if let (Ok(target), Ok(input)) = (
        std::env::var("KFLIP_FUZZ_TARGET"),
        std::env::var("KFLIP_FUZZ_INPUT"),
    ) {
        let (_, entry) = kflip::fuzzing::TARGETS
            .iter()
            .find(|(name, _)| *name == target)
            .unwrap_or_else(|| panic!("no fuzz target {target}"));
        replay(&target, *entry, &[PathBuf::from(input)]);
        return;
    }
    for (target, entry) in kflip::fuzzing::TARGETS {
        let dir = corpus(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("a corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        replay(target, *entry, &files);
    }
}
