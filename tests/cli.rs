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
