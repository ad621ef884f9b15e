//! Release builds of the `kflip` binary: the code kflip runs laid out
//! together, and compact relocations. Both only make its RSS smaller.
//!
//! **Hot code first.** The kernel maps an executable's code 64 KiB around
//! each page fault. The functions a proxy runs are about 1 MiB of kflip's
//! 13 MB of code, but spread over all of it, so a proxy after a load held
//! 6.4 MiB of code. A linker script adds a `.text.hot` section before
//! `.text` holding the functions named in `hot-code.txt`
//! (`scripts/hot-code.sh` writes it from a profile). A name the build does
//! not define (new code, another compiler's hashes) is skipped: only the
//! saving shrinks. `KFLIP_CODE_ORDER=off` links without it.
//!
//! **Packed relative relocations** (`-z pack-relative-relocs`, DT_RELR,
//! glibc 2.36 and binutils 2.38 or later): the dynamic loader reads the
//! relocations of a position-independent executable at start and they stay
//! resident; packed, 0.7 MiB of them become a few KiB.
//!
//! Each is probed with the C compiler first; a linker without it links the
//! binary as before, with a warning.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=hot-code.txt");
    println!("cargo:rerun-if-env-changed=KFLIP_CODE_ORDER");
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
    {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let relr = "-Wl,-z,pack-relative-relocs";
    if links_with(&out, &[relr]) {
        println!("cargo:rustc-link-arg-bins={relr}");
    } else {
        println!(
            "cargo:warning=the linker does not pack relative relocations; kflip links without"
        );
    }
    if std::env::var("KFLIP_CODE_ORDER").as_deref() == Ok("off") {
        return;
    }
    let Ok(list) = std::fs::read_to_string("hot-code.txt") else {
        return;
    };
    let script = out.join("hot-code.ld");
    if std::fs::write(&script, linker_script(&list)).is_err() {
        return;
    }
    let arg = format!("-Wl,-T,{}", script.display());
    if links_with(&out, &[&arg]) {
        println!("cargo:rustc-link-arg-bins={arg}");
    } else {
        println!(
            "cargo:warning=the linker does not take hot-code.txt's layout; \
             kflip links without it and its idle RSS is a few MiB larger"
        );
    }
}

/// A linker script that adds an output section `.text.hot` before `.text`
/// with the listed functions (one symbol name, or a glob of one, per
/// line), in order; everything else keeps the linker's default layout
/// (`INSERT`). A function's section is `.text.<name>`, or
/// `.text.unlikely.<name>` for a cold one.
fn linker_script(list: &str) -> String {
    let mut s = String::from("SECTIONS\n{\n  .text.hot :\n  {\n");
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        s.push_str(&format!("    *(.text.{name} .text.unlikely.{name})\n"));
    }
    s.push_str("  }\n}\nINSERT BEFORE .text;\n");
    s
}

/// Whether the C compiler links a trivial program with these options.
fn links_with(out: &Path, args: &[&str]) -> bool {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let child = Command::new(cc)
        .args(args)
        .args(["-x", "c", "-", "-o"])
        .arg(out.join("probe"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        if stdin.write_all(b"int main(void) { return 0; }\n").is_err() {
            return false;
        }
    }
    child.wait().is_ok_and(|s| s.success())
}
