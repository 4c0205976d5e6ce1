//! A loopback TCP listener that records every byte delivered to it and
//! answers nothing: where a test points a directory connection to see what
//! Roster would send there (D7: a stored secret must never arrive at a
//! target it was not entered for). Each connection is read until the peer
//! closes it or stays quiet for a moment, then closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Seen {
    bytes: Mutex<Vec<u8>>,
    connections: AtomicU64,
}

/// A recording listener on `127.0.0.1:<port>`.
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf))
                            .await
                    {
                        if n == 0 {
                            break;
                        }
                        s.bytes.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder { addr, seen, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.seen.connections.load(Ordering::SeqCst)
    }

    /// Every byte received so far, from every connection.
    pub fn bytes(&self) -> Vec<u8> {
        self.seen.bytes.lock().unwrap().clone()
    }

    /// Whether `needle` arrived (within one connection's bytes).
    pub fn received(&self, needle: &str) -> bool {
        let b = self.bytes();
        b.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// Waits up to `within` for `needle` to arrive.
    pub async fn wait_for(&self, needle: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.received(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
