//! Moving bytes from one plain TCP socket to another inside the kernel.
//!
//! A Fetch response's records pass through kflip unchanged, and on a
//! consuming connection they are nearly all of its bytes. Read into kflip
//! and written out again, every byte is copied twice between the kernel
//! and kflip: that was 97% of kflip's CPU while proxying consumers
//! (BENCHMARKS.md). `splice(2)` moves them from the broker's socket into a
//! pipe and from the pipe into the client's socket by page reference, with
//! no copy into kflip. Only plain TCP on both sides can: TLS records must
//! be decrypted and encrypted again in kflip.
//!
//! The pipe exists for one response and is closed after it, so idle
//! connections hold no descriptors for it.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Records smaller than this are copied: a pipe costs three system calls
/// to make and close.
pub const SPLICE_MIN: usize = 32 * 1024;

/// The pipe's size asked for: 1 MiB, the default largest one an
/// unprivileged process may ask for; it moves a partition's usual fetch
/// (1 MiB) in one go. The kernel's default of 64 KiB is kept if refused.
const PIPE_BYTES: usize = 1 << 20;

/// A reader whose unread bytes and socket the Fetch pump can reach.
pub trait SpliceFrom {
    /// The bytes read ahead and not consumed, which come first, and the
    /// plain TCP socket behind them (`None`: TLS, or not a socket).
    fn splice_source(&self) -> Option<(&[u8], &TcpStream)> {
        None
    }
}

/// A writer whose plain TCP socket the Fetch pump can reach.
pub trait SpliceTo {
    /// The plain TCP socket written to (`None`: TLS, or not a socket).
    fn splice_sink(&self) -> Option<&TcpStream> {
        None
    }
}

/// The pipe bytes pass through.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// What one splice into it may move.
    size: usize,
}

impl Pipe {
    /// A non-blocking pipe, as large as the kernel allows up to 1 MiB.
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        let size = fcntl_setpipe_size(&write, PIPE_BYTES).unwrap_or(64 * 1024);
        Ok(Pipe { read, write, size })
    }

    /// Moves exactly `n` bytes from `from` to `to`. An error leaves the
    /// connection mid-response: the caller closes it.
    pub async fn splice(&self, from: &TcpStream, to: &TcpStream, n: usize) -> io::Result<()> {
        let flags = SpliceFlags::MOVE | SpliceFlags::NONBLOCK;
        let mut left = n;
        while left > 0 {
            // The pipe is empty here, so "would block" is the socket's.
            let got = loop {
                from.readable().await?;
                match from.try_io(Interest::READABLE, || {
                    Ok(splice(
                        from,
                        None,
                        &self.write,
                        None,
                        left.min(self.size),
                        flags,
                    )?)
                }) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the broker closed the connection mid-response",
                        ))
                    }
                    Ok(k) => break k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            };
            left -= got;
            let mut queued = got;
            while queued > 0 {
                to.writable().await?;
                match to.try_io(Interest::WRITABLE, || {
                    Ok(splice(&self.read, None, to, None, queued, flags)?)
                }) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the client took no bytes",
                        ))
                    }
                    Ok(k) => queued -= k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl SpliceFrom for tokio::io::BufReader<&[u8]> {}
impl SpliceTo for Vec<u8> {}
