//! `harness relay <port>`: the byte relay QEMU's guestfwd `cmd:` runs once per
//! guest connection; stdin → 127.0.0.1:<port> → stdout, with proper half-close.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use anyhow::Context;

/// Arguments of `harness relay`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback port to connect to (the instance's emulated IMDS).
    pub port: u16,
}

pub async fn run(args: Args) -> anyhow::Result<i32> {
    // Plain blocking I/O on OS threads: stdin cannot be read without blocking,
    // and a blocked std thread does not hold up the process exit.
    let port = args.port;
    let sock = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("relay: connecting to 127.0.0.1:{port}"))?;
    let mut to_sock = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 16384];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_sock.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        // stdin hit EOF: tell the server we are done sending.
        let _ = to_sock.shutdown(Shutdown::Write);
    });
    let mut from_sock = sock;
    let mut stdout = std::io::stdout().lock();
    let mut buf = [0u8; 16384];
    loop {
        let n = from_sock
            .read(&mut buf)
            .context("relay: reading the socket")?;
        if n == 0 {
            break;
        }
        stdout
            .write_all(&buf[..n])
            .context("relay: writing stdout")?;
        stdout.flush()?;
    }
    Ok(0)
}
