//! A TCP proxy in front of PostgreSQL that can fail the way networks do: cut every
//! connection and come back later on the same port, or break one connection exactly at a
//! transaction's COMMIT (before the server gets it, or after it got it and before its
//! answer comes back).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the next COMMIT that passes meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtCommit {
    /// Passes, as everything else.
    Pass = 0,
    /// The connection breaks before PostgreSQL receives the COMMIT.
    CutBefore = 1,
    /// PostgreSQL receives the COMMIT; the connection breaks before its answer returns.
    CutAfter = 2,
}

pub(crate) struct Proxy {
    pub addr: std::net::SocketAddr,
    target: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    at_commit: Arc<AtomicU8>,
    /// ReadyForQuery messages PostgreSQL sent: one per round trip a client waited for.
    ready: Arc<AtomicU64>,
}

impl Proxy {
    pub(crate) async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            target,
            tasks: Arc::default(),
            at_commit: Arc::new(AtomicU8::new(AtCommit::Pass as u8)),
            ready: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// How many round trips clients have made through the proxy so far: each simple
    /// query or extended-protocol Sync ends in one ReadyForQuery. Needs plain text
    /// (`sslmode=disable`).
    pub(crate) fn round_trips(&self) -> u64 {
        self.ready.load(Ordering::SeqCst)
    }

    /// Arms the next COMMIT (one only; later ones pass).
    pub(crate) fn at_next_commit(&self, what: AtCommit) {
        self.at_commit.store(what as u8, Ordering::SeqCst);
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target.clone();
        let at_commit = self.at_commit.clone();
        let ready = self.ready.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let at_commit = at_commit.clone();
                let ready = ready.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        pipe(inbound, outbound, at_commit, ready).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops the listener and every connection through it.
    pub(crate) fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub(crate) async fn restore(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// Copies both ways until either side closes, watching the client's bytes for an armed
/// COMMIT.
async fn pipe(
    inbound: TcpStream,
    outbound: TcpStream,
    at_commit: Arc<AtomicU8>,
    ready: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let answers = tokio::spawn(async move {
        // Every server message is framed (type byte, then a length that counts itself)
        // once no TLS is negotiated; count the ReadyForQuery ones ('Z').
        let mut buffer = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buffer[..n]);
            let mut at = 0;
            while pending.len() >= at + 5 {
                let len = u32::from_be_bytes(pending[at + 1..at + 5].try_into().unwrap()) as usize;
                if pending.len() < at + 1 + len {
                    break;
                }
                if pending[at] == b'Z' {
                    ready.fetch_add(1, Ordering::SeqCst);
                }
                at += 1 + len;
            }
            pending.drain(..at);
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        let armed = at_commit.load(Ordering::SeqCst);
        if armed != AtCommit::Pass as u8 && chunk.windows(6).any(|w| w == b"COMMIT") {
            at_commit.store(AtCommit::Pass as u8, Ordering::SeqCst);
            // No answer may come back from here on.
            answers.abort();
            if armed == AtCommit::CutAfter as u8 {
                let _ = server_write.write_all(chunk).await;
                let _ = server_write.flush().await;
                // Let PostgreSQL act on it, then lose its answer.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            answers.abort();
            return;
        }
        if server_write.write_all(chunk).await.is_err() {
            break;
        }
    }
    answers.abort();
}
