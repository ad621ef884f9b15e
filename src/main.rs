fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    kflip::memory::set_trim(trim);
    kflip::cli::main()
}

/// Gives the free memory of glibc's heaps back to the kernel
/// (`kflip::memory`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes a byte count and has no preconditions; it
    // only releases free pages of malloc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
