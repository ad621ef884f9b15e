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
fn every_command_has_an_example_in_its_help() {
    for cmd in [
        &["proxy"][..],
        &["replicate"],
        &["run"],
        &["users-add"],
        &["validate-config"],
        &["status"],
        &["failover"],
        &["failback"],
        &["offsets"],
        &["offsets", "translate"],
        &["offsets", "reset"],
        &["orphans"],
        &["orphans", "list"],
        &["orphans", "restore"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let (ok, text) = kflip(&args);
        assert!(ok, "{cmd:?}: {text}");
        assert!(
            text.contains("Example"),
            "{cmd:?} --help has no example:\n{text}"
        );
    }
}

#[test]
fn runbook_commands_fail_with_the_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kflip.yaml");
    std::fs::write(
        &cfg,
        "clusters:\n  dc1: { bootstrap: \"127.0.0.1:1\" }\n  dc2: { bootstrap: \"127.0.0.1:2\" }\nproxy:\n  listen: \"127.0.0.1:0\"\n  active: dc1\nadmin:\n  listen: \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let code = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kflip"))
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    // The admin API cannot be reached: 3.
    assert_eq!(code(&["status", "-c", cfg]), Some(3));
    assert_eq!(code(&["failover", "-c", cfg, "--to", "dc2"]), Some(3));
    // Bad arguments: 2, and the file is left alone.
    assert_eq!(code(&["failover", "-c", cfg, "--to", "dc9"]), Some(2));
    assert_eq!(code(&["status"]), Some(2));
    assert!(std::fs::read_to_string(cfg)
        .unwrap()
        .contains("active: dc1"));
    // --stdout needs no running kflip and changes nothing on disk.
    let out = Command::new(env!("CARGO_BIN_EXE_kflip"))
        .args(["failover", "-c", cfg, "--to", "dc2", "--stdout"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("  active: dc2\n"));
    assert!(std::fs::read_to_string(cfg)
        .unwrap()
        .contains("active: dc1"));
}

#[test]
fn every_shipped_example_config_validates() {
    let dir = support::repo().join("proxy-config");
    // Examples name certificates and secrets under /etc/kflip/; validation
    // checks that named files exist, so each example is checked on a copy
    // whose /etc/kflip/ is a scratch directory holding those files.
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("etc-kflip");
    let mut files: Vec<String> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).unwrap();
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '"') {
            if let Some(rest) = word.strip_prefix("/etc/kflip/") {
                let f = root.join(rest);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(&f, "placeholder\n").unwrap();
            }
        }
        let copy = scratch.path().join(path.file_name().unwrap());
        let rooted = format!("{}/", root.display());
        std::fs::write(&copy, text.replace("/etc/kflip/", &rooted)).unwrap();
        files.push(copy.display().to_string());
    }
    assert!(files.len() >= 8, "{files:?}");
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
