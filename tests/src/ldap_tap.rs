//! A TCP relay between Roster and a real LDAP server that watches the LDAP
//! messages the server sends (search entries, search results), so that an
//! end-to-end test can act at a known point of a read: hold the answers
//! (a run that stays `running`), or kill the server once a given number of
//! entries has reached the reader (the connection dies mid-page, D3.r).
//! Plain LDAP only (it reads the BER framing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// LDAP protocol operations (RFC 4511, APPLICATION tags, constructed).
const SEARCH_RESULT_ENTRY: u8 = 0x64;
const SEARCH_RESULT_DONE: u8 = 0x65;

type Trigger = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    /// SearchResultEntry messages forwarded to readers.
    entries: AtomicU64,
    /// SearchResultDone messages forwarded (one per page of a paged search).
    searches_done: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// While true, nothing the server sends is forwarded.
    held: AtomicBool,
    /// Called once `entries` reaches the count; then every connection is cut.
    trigger: Mutex<Option<(u64, Trigger)>>,
    /// Set once the trigger fired.
    fired: AtomicBool,
}

/// A relay on `127.0.0.1:<port>` to one LDAP server.
pub struct LdapTap {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for LdapTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LdapTap {
    /// Starts relaying to `upstream` (a plain LDAP port).
    pub async fn start(upstream: SocketAddr) -> LdapTap {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("tap listener");
        let port = listener.local_addr().expect("tap address").port();
        let state = Arc::new(State::default());
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, s).await;
                    }
                    // Upstream down: the client's connection is closed at once.
                });
            }
        });
        LdapTap { port, state, task }
    }

    /// The port to give Roster as the LDAP server's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Holds (true) or releases (false) everything the server sends.
    pub fn hold(&self, on: bool) {
        self.state.held.store(on, Ordering::SeqCst);
    }

    /// Search entries forwarded so far.
    pub fn entries(&self) -> u64 {
        self.state.entries.load(Ordering::SeqCst)
    }

    /// Search results (pages) forwarded so far.
    pub fn searches_done(&self) -> u64 {
        self.state.searches_done.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Whether the trigger set by [`LdapTap::when_entries`] has fired.
    pub fn fired(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }

    /// Once `more` further search entries have been forwarded, calls `f`
    /// (for instance: kill the server) before forwarding anything else, and
    /// cuts the connection: the reader has what came before, nothing after.
    pub fn when_entries(&self, more: u64, f: impl FnOnce() + Send + 'static) {
        let at = self.entries() + more;
        *self.state.trigger.lock().unwrap() = Some((at, Box::new(f)));
    }
}

/// Copies client to server as is, and server to client message by message.
async fn relay(client: TcpStream, server: TcpStream, state: Arc<State>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_r, &mut server_w).await;
        let _ = server_w.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    'outer: loop {
        let n = match server_r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some((len, op)) = message(&buf[start..]) {
            while state.held.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if op == SEARCH_RESULT_ENTRY {
                let seen = state.entries.load(Ordering::SeqCst);
                let due = {
                    let mut t = state.trigger.lock().unwrap();
                    match t.as_ref() {
                        Some((at, _)) if seen >= *at => t.take().map(|(_, f)| f),
                        _ => None,
                    }
                };
                if let Some(f) = due {
                    f();
                    state.fired.store(true, Ordering::SeqCst);
                    break 'outer;
                }
                state.entries.fetch_add(1, Ordering::SeqCst);
            } else if op == SEARCH_RESULT_DONE {
                state.searches_done.fetch_add(1, Ordering::SeqCst);
            }
            if client_w.write_all(&buf[start..start + len]).await.is_err() {
                break 'outer;
            }
            start += len;
        }
        buf.drain(..start);
    }
    upstream.abort();
    // Dropping both halves closes the reader's connection.
}

/// The length and protocol-operation tag of the first complete LDAPMessage
/// in `b`, if it is all there.
fn message(b: &[u8]) -> Option<(usize, u8)> {
    if b.len() < 2 {
        return None;
    }
    assert_eq!(b[0], 0x30, "not an LDAPMessage: plain LDAP only");
    let (len, header) = ber_length(&b[1..])?;
    let total = 1 + header + len;
    if b.len() < total {
        return None;
    }
    // messageID: INTEGER.
    let body = &b[1 + header..total];
    let (id_len, id_header) = ber_length(&body[1..])?;
    let op = *body.get(1 + id_header + id_len)?;
    Some((total, op))
}

/// A BER length: (value, bytes it took).
fn ber_length(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    if first < 0x80 {
        return Some((first as usize, 1));
    }
    let n = (first & 0x7f) as usize;
    if b.len() < 1 + n {
        return None;
    }
    let mut len = 0usize;
    for &x in &b[1..=n] {
        len = (len << 8) | x as usize;
    }
    Some((len, 1 + n))
}
