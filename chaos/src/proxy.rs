//! A TCP fault proxy: put it between clients and any broker or database on the same host, then
//! cut, refuse, black-hole, slow down or half-close what goes through it.
//!
//! Clients connect to [`FaultProxy::addr`] instead of the server; each connection is forwarded
//! to the upstream address byte for byte until a fault says otherwise. Faults act on the
//! connections open when they start and on the ones accepted while they last:
//!
//! | fault | what a client sees |
//! |---|---|
//! | [`FaultProxy::cut`] | every open connection reset at once (new ones are forwarded) |
//! | [`ProxyFault::Refuse`] | new connections reset as soon as they are accepted |
//! | [`ProxyFault::BlackHole`] | connections accepted, nothing answered: bytes are held, not lost, and flow again when the fault heals (a partition the TCP stack outlives) |
//! | [`ProxyFault::Latency`] | every chunk delayed by the given time in each direction |
//! | [`ProxyFault::HalfClose`] | the server's side ends (the client reads end of stream) while the client can still write |
//!
//! A "broker gone" outage is [`FaultProxy::cut`] followed by [`ProxyFault::Refuse`] until
//! [`FaultProxy::heal`]. Every fault is counted ([`ProxyCounters`]) so that a test can prove it
//! touched a connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

use crate::ChaosError;

/// A fault that lasts until [`FaultProxy::heal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyFault {
    /// New connections are reset as soon as they are accepted; open ones go on.
    Refuse,
    /// Connections are accepted but nothing is forwarded either way until the fault heals;
    /// what was sent meanwhile is delivered then.
    BlackHole,
    /// Each chunk of bytes is forwarded this much later, in each direction.
    Latency(Duration),
    /// The client-facing side of every connection is shut down for writing: the client reads
    /// end of stream, its own writes still reach the server.
    HalfClose,
}

/// What a proxy has done so far; a fault test reads it to prove its fault touched something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    /// Connections accepted and forwarded.
    pub forwarded: u64,
    /// Connections reset by [`FaultProxy::cut`].
    pub cut: u64,
    /// Connections reset at accept by [`ProxyFault::Refuse`].
    pub refused: u64,
    /// Chunks held back by [`ProxyFault::BlackHole`] or delayed by [`ProxyFault::Latency`].
    pub held: u64,
    /// Connections half-closed by [`ProxyFault::HalfClose`].
    pub half_closed: u64,
    /// Bytes forwarded, both directions together.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    cut: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
    half_closed: AtomicU64,
    bytes: AtomicU64,
}

struct Shared {
    upstream: SocketAddr,
    fault: watch::Sender<Option<ProxyFault>>,
    connections: Mutex<Vec<AbortHandle>>,
    counters: Counters,
}

/// A running fault proxy. Dropping it closes its port and every connection through it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks a free one) and forwards every connection to
    /// `upstream`.
    ///
    /// # Errors
    /// [`ChaosError::Proxy`] when `listen` cannot be bound (the port is taken, or the address
    /// is not this host's).
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Result<Self, ChaosError> {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            ChaosError::Proxy(format!(
                "cannot listen on {listen} (for {upstream}): {e}; is the port taken?"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| ChaosError::Proxy(format!("proxy address: {e}")))?;
        let shared = Arc::new(Shared {
            upstream,
            fault: watch::Sender::new(None),
            connections: Mutex::default(),
            counters: Counters::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every open connection at once; returns how many there were. New connections are
    /// forwarded unless a [`ProxyFault::Refuse`] is in force.
    pub fn cut(&self) -> u64 {
        let mut connections = self.shared.lock_connections();
        let mut cut = 0;
        for connection in connections.drain(..) {
            if !connection.is_finished() {
                connection.abort();
                cut += 1;
            }
        }
        self.shared.counters.cut.fetch_add(cut, Relaxed);
        cut
    }

    /// Starts `fault`, replacing the one in force.
    pub fn set(&self, fault: ProxyFault) {
        self.shared.fault.send_replace(Some(fault));
    }

    /// Ends the fault in force: connections forward normally again (held bytes flow).
    pub fn heal(&self) {
        self.shared.fault.send_replace(None);
    }

    /// The fault in force.
    pub fn fault(&self) -> Option<ProxyFault> {
        *self.shared.fault.borrow()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        let mut connections = self.shared.lock_connections();
        connections.retain(|c| !c.is_finished());
        connections.len()
    }

    /// What the proxy has done so far.
    pub fn counters(&self) -> ProxyCounters {
        let c = &self.shared.counters;
        ProxyCounters {
            forwarded: c.forwarded.load(Relaxed),
            cut: c.cut.load(Relaxed),
            refused: c.refused.load(Relaxed),
            held: c.held.load(Relaxed),
            half_closed: c.half_closed.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl Shared {
    fn lock_connections(&self) -> std::sync::MutexGuard<'_, Vec<AbortHandle>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: try again shortly rather than stop serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if *shared.fault.borrow() == Some(ProxyFault::Refuse) {
            shared.counters.refused.fetch_add(1, Relaxed);
            reset(client);
            continue;
        }
        shared.counters.forwarded.fetch_add(1, Relaxed);
        let connection = tokio::spawn(forward(client, Arc::clone(&shared)));
        let mut connections = shared.lock_connections();
        connections.retain(|c| !c.is_finished());
        connections.push(connection.abort_handle());
    }
}

/// Closes `stream` with a reset (SO_LINGER 0), as a host without a listener answers.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn forward(client: TcpStream, shared: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    // A black hole accepts and answers nothing, the upstream connection included.
    let mut fault = shared.fault.subscribe();
    let _ = fault.wait_for(|f| *f != Some(ProxyFault::BlackHole)).await;
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        reset(client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, Direction::ToServer, &shared),
        pump(server_read, client_write, Direction::ToClient, &shared),
    );
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// Copies `from` to `to` under the faults in force, until either side ends.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, way: Direction, shared: &Shared) {
    let mut fault = shared.fault.subscribe();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if way == Direction::ToClient && *fault.borrow_and_update() == Some(ProxyFault::HalfClose) {
            shared.counters.half_closed.fetch_add(1, Relaxed);
            break;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = fault.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let in_force = *fault.borrow_and_update();
        match in_force {
            Some(ProxyFault::BlackHole) => {
                shared.counters.held.fetch_add(1, Relaxed);
                if fault
                    .wait_for(|f| *f != Some(ProxyFault::BlackHole))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Some(ProxyFault::Latency(delay)) => {
                shared.counters.held.fetch_add(1, Relaxed);
                tokio::time::sleep(delay).await;
            }
            _ => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        shared.counters.bytes.fetch_add(n as u64, Relaxed);
    }
    // Only this direction ends: after a half-close the other pump still carries the
    // client's writes, until the client closes.
    let _ = to.shutdown().await;
}
