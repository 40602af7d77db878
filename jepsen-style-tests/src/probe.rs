//! `jepsen probe`: the small program the harness runs inside a host's
//! namespace to see what the kernel does to a link: whether a connection
//! opens, and how long that takes (one round trip).

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Opens a connection to `addr`: prints `connected in N us` when an
/// answer came back (the connection opened, or was refused: a packet went
/// there and back either way), or `unreachable` when none did within
/// `timeout` (dropped, no route). Exits 0 either way; the caller reads
/// what it printed.
pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
    let began = Instant::now();
    let line = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => format!("connected in {} us", began.elapsed().as_micros()),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connected in {} us", began.elapsed().as_micros())
        }
        Err(_) => "unreachable".to_owned(),
    };
    writeln!(std::io::stdout(), "{line}")
}

/// Accepts connections on `addr` and closes them, for `seconds`.
pub fn listen(addr: SocketAddr, seconds: u64) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        match listener.accept() {
            Ok((stream, _)) => drop(stream),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
