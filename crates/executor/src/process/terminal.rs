//! A pseudo-terminal for a process: the executor holds its controlling side (reads what the
//! program writes, writes what the caller types, sets its size); the program gets the other.

use rustix::io::Errno;
use sandbox_protocol::PtySize;
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::unix::AsyncFd;

/// The controlling side of a pseudo-terminal.
pub struct Terminal {
    master: AsyncFd<OwnedFd>,
}

impl Terminal {
    /// Opens a pseudo-terminal of `size`: the controlling side, and the side for the program.
    pub fn open(size: PtySize) -> std::io::Result<(Terminal, OwnedFd)> {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::OpenptFlags;
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let name = rustix::pty::ptsname(&master, Vec::new())?;
        let program_side = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::io::ioctl_fionbio(&master, true)?;
        // SAFETY: the OwnedFd is moved in and stays open, unchanged, for the AsyncFd's life.
        let master =
            unsafe { AsyncFd::register(master) }.map_err(|e| std::io::Error::other(e.to_string()))?;
        let terminal = Terminal { master };
        terminal.resize(size)?;
        Ok((terminal, program_side))
    }

    /// Sets its size (the program gets `SIGWINCH`).
    pub fn resize(&self, size: PtySize) -> std::io::Result<()> {
        let winsize =
            rustix::termios::Winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
        Ok(rustix::termios::tcsetwinsize(self.master.get_ref(), winsize)?)
    }

    /// The next bytes the program wrote; 0 once no program holds the terminal. Cancel-safe.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            if let Ok(result) = guard.try_io(|fd| read_now(fd.get_ref().as_fd(), buf)) {
                return result;
            }
        }
    }

    /// What the terminal holds now, without waiting: 0 when it holds nothing.
    pub fn drain(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match read_now(self.master.get_ref().as_fd(), buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    /// Types `bytes` into the terminal; waits while it is full.
    pub async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.master.writable().await?;
            if let Ok(written) = guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), bytes)?)) {
                bytes = &bytes[written?..];
            }
        }
        Ok(())
    }
}

/// One non-blocking read; `EIO` (no program holds the terminal any more) is the end.
fn read_now(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(Errno::IO) => return Ok(0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the program side writes arrives, the size holds, and the end is seen once the
    /// program side is closed.
    #[tokio::test]
    async fn a_terminal_carries_bytes_both_ways() {
        let (t, program) = Terminal::open(PtySize { cols: 100, rows: 30 }).unwrap();
        let size = rustix::termios::tcgetwinsize(&program).unwrap();
        assert_eq!((size.ws_col, size.ws_row), (100, 30));
        t.resize(PtySize { cols: 40, rows: 10 }).unwrap();
        assert_eq!(rustix::termios::tcgetwinsize(&program).unwrap().ws_col, 40);

        rustix::io::write(&program, b"out\n").unwrap();
        let mut buf = [0u8; 64];
        let n = t.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"out\r\n", "the terminal turns newlines into CR LF");

        t.write_all(b"typed\n").await.unwrap();
        let mut got = [0u8; 64];
        let n = rustix::io::read(&program, &mut got).unwrap();
        assert_eq!(&got[..n], b"typed\n");
        // The typed line is echoed back, as a terminal does.
        let n = t.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"typed\r\n");
        assert_eq!(t.drain(&mut buf).unwrap(), 0, "nothing more");

        drop(program);
        assert_eq!(t.read(&mut buf).await.unwrap(), 0, "the end once the program side is closed");
    }
}
