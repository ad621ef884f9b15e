//! The command line: help, validate-config on every shipped example, and
//! clear errors for bad files.

mod support;

use std::process::Command;

fn kflip(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kflip"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn help_names_every_subcommand() {
    let (ok, text) = kflip(&["--help"]);
    assert!(ok);
    for cmd in ["proxy", "replicate", "run", "validate-config"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn every_shipped_example_config_validates() {
    let dir = support::repo().join("proxy-config");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let args: Vec<&str> = std::iter::once("validate-config")
        .chain(files.iter().map(|s| s.as_str()))
        .collect();
    let (ok, text) = kflip(&args);
    assert!(ok, "{text}");
    assert_eq!(text.matches(": ok").count(), files.len(), "{text}");
}

#[test]
fn invalid_config_names_the_key_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "clusters:\n  dc1: { bootstrap: \"h:1\" }\nproxy:\n  listen: \"127.0.0.1:9092\"\n  active: dc2\n").unwrap();
    let (ok, text) = kflip(&["validate-config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("proxy.active"), "{text}");

    let (ok, text) = kflip(&["proxy", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("proxy.active"), "{text}");

    let (ok, text) = kflip(&["proxy", "--config", "/nonexistent/kflip.yaml"]);
    assert!(!ok);
    assert!(
        text.contains("cannot read config file /nonexistent/kflip.yaml"),
        "{text}"
    );
}
