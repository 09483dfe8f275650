//! A [`Link`] over a non-blocking `std::net::TcpStream` (the hosted
//! service and the tests). The connect runs on a helper thread so that
//! nothing here blocks the caller's loop.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use super::{CONNECT_TIMEOUT_MS, Link, LinkState, Portal};

enum Inner {
    Connecting(Receiver<std::io::Result<TcpStream>>),
    Open(TcpStream),
    Closed,
}

/// One connection to a target.
pub struct StdLink {
    inner: Inner,
}

impl core::fmt::Debug for StdLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StdLink")
            .field("state", &self.state())
            .finish()
    }
}

impl StdLink {
    /// Starts connecting to `portal`.
    pub fn connect(portal: Portal) -> StdLink {
        let (tx, rx) = channel();
        let addr = SocketAddr::from((portal.ip, portal.port));
        std::thread::spawn(move || {
            let r = TcpStream::connect_timeout(&addr, Duration::from_millis(CONNECT_TIMEOUT_MS))
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    s.set_nodelay(true)?;
                    Ok(s)
                });
            let _ = tx.send(r);
        });
        StdLink {
            inner: Inner::Connecting(rx),
        }
    }

    fn settle(&mut self) {
        if let Inner::Connecting(rx) = &self.inner {
            self.inner = match rx.try_recv() {
                Ok(Ok(stream)) => Inner::Open(stream),
                Ok(Err(_)) | Err(TryRecvError::Disconnected) => Inner::Closed,
                Err(TryRecvError::Empty) => return,
            };
        }
    }
}

impl Link for StdLink {
    fn state(&self) -> LinkState {
        match self.inner {
            Inner::Connecting(_) => LinkState::Connecting,
            Inner::Open(_) => LinkState::Open,
            Inner::Closed => LinkState::Closed,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> usize {
        self.settle();
        let Inner::Open(stream) = &mut self.inner else {
            return 0;
        };
        match stream.write(bytes) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
            Err(_) => {
                self.inner = Inner::Closed;
                0
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.settle();
        let Inner::Open(stream) = &mut self.inner else {
            return 0;
        };
        match stream.read(buf) {
            Ok(0) => {
                self.inner = Inner::Closed;
                0
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
            Err(_) => {
                self.inner = Inner::Closed;
                0
            }
        }
    }

    fn close(&mut self) {
        if let Inner::Open(stream) = &self.inner {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.inner = Inner::Closed;
    }
}
