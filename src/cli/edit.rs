//! Editing `proxy.active` in a config file the way an operator would: one
//! value on one line changes, comments and layout stay, and the file is
//! replaced atomically (a reader sees the old file or the new one, never
//! half of one), so the file stays the source of truth.

use std::io::Write;
use std::path::Path;

/// `text` with `proxy.active` set to `to`, or why it cannot be done.
pub(super) fn set_active(text: &str, to: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let proxy = lines
        .iter()
        .position(|l| is_key(l, 0, "proxy"))
        .ok_or("the file has no top-level `proxy:` block")?;
    if !value_of(lines[proxy], "proxy").is_empty() {
        return Err(
            "`proxy:` is written inline (flow style); write it as a block to let kflip edit it"
                .into(),
        );
    }
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(proxy + 1) {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let here = body.len() - trimmed.len();
        if here == 0 {
            break;
        }
        let block = *indent.get_or_insert(here);
        if here != block {
            continue;
        }
        if is_key(line, block, "active") {
            let mut out: String = lines[..i].concat();
            let value = value_of(line, "active");
            let comment = value
                .find(" #")
                .map(|at| value[at..].to_string())
                .unwrap_or_default();
            out.push_str(&format!(
                "{}active: {to}{comment}{}",
                &body[..block],
                &line[body.len()..]
            ));
            out.push_str(&lines[i + 1..].concat());
            return Ok(out);
        }
    }
    Err("the `proxy:` block has no `active:` key".into())
}

fn is_key(line: &str, indent: usize, key: &str) -> bool {
    let Some(rest) = line.get(indent..) else {
        return false;
    };
    line[..indent].chars().all(|c| c == ' ')
        && rest
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start_matches(' ').starts_with(':'))
}

/// What follows `key:` on its line, trimmed.
fn value_of<'a>(line: &'a str, key: &str) -> &'a str {
    let after = line.trim_start().strip_prefix(key).unwrap_or("");
    after
        .trim_start_matches(' ')
        .strip_prefix(':')
        .unwrap_or("")
        .trim()
}

/// Replaces `path` with `text`: written to a temporary file beside it,
/// flushed to disk, given the old file's permissions, then renamed over it.
pub(super) fn replace_file(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let tmp = dir.join(format!(".{name}.kflip-{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# the DR pair\nclusters:\n  dc1: { bootstrap: \"a:9092\" }\n  dc2: { bootstrap: \"b:9092\" }\nproxy:\n  listen: \"0.0.0.0:9092\"\n  # which side clients use\n  active: dc1   # flipped by kflip failover\n  switch_drain: 5s\nreplication:\n  flows: []\n";

    #[test]
    fn only_the_value_changes() {
        let out = set_active(FILE, "dc2").unwrap();
        assert_eq!(
            out,
            FILE.replace(
                "active: dc1   # flipped by kflip failover",
                "active: dc2 # flipped by kflip failover"
            )
        );
    }

    #[test]
    fn keys_of_other_blocks_and_deeper_levels_are_left_alone() {
        let text = "clusters:\n  dc1: { bootstrap: \"a:1\" }\nother:\n  active: x\nproxy:\n  tls:\n    active: y\n  active: dc1\n";
        let out = set_active(text, "dc2").unwrap();
        assert!(out.contains("other:\n  active: x\n"));
        assert!(out.contains("    active: y\n"));
        assert!(out.ends_with("  active: dc2\n"));
    }

    #[test]
    fn crlf_and_a_missing_final_newline_are_kept() {
        assert_eq!(
            set_active("proxy:\r\n  active: dc1\r\n", "dc2").unwrap(),
            "proxy:\r\n  active: dc2\r\n"
        );
        assert_eq!(
            set_active("proxy:\n  active: dc1", "dc2").unwrap(),
            "proxy:\n  active: dc2"
        );
    }

    #[test]
    fn what_cannot_be_edited_is_said() {
        assert!(set_active("clusters: {}\n", "dc2")
            .unwrap_err()
            .contains("no top-level `proxy:`"));
        assert!(set_active("proxy: { active: dc1 }\n", "dc2")
            .unwrap_err()
            .contains("inline"));
        assert!(set_active("proxy:\n  listen: x\n", "dc2")
            .unwrap_err()
            .contains("no `active:`"));
    }

    #[test]
    fn the_file_is_replaced_whole_with_its_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kflip.yaml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace_file(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
