//! A small TCP proxy in front of the broker, for controllable partitions:
//! [`Mode::Pass`] forwards bytes, [`Mode::Blackhole`] keeps connections open
//! but forwards nothing (a hung network), [`Mode::Reset`] resets every
//! connection, existing and new.
//!
//! The broker advertises the proxy's address, so every client connection,
//! bootstrap and data alike, goes through it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Pass,
    /// Forward nothing; keep connections open (a partition that drops
    /// packets silently).
    Blackhole,
    /// Reset every connection (existing ones at once, new ones on accept).
    Reset,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Listens on `listen` (use port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (mode, watch) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(client, upstream, watch.clone()));
            }
        });
        Ok(Self {
            addr,
            mode,
            accepted,
            task,
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection to `mode`.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.mode.send_replace(Mode::Reset);
    }
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: closing sends RST instead of FIN.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn serve(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // Wait until traffic may pass before dialling the broker.
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Pass => break,
            Mode::Reset => return reset(client),
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return reset(client);
                }
            }
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Reset => {
                if let (Ok(c), Ok(s)) = (cr.reunite(cw), sr.reunite(sw)) {
                    reset(c);
                    reset(s);
                }
                return;
            }
            Mode::Blackhole => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Pass => {
                tokio::select! {
                    changed = mode.changed() => if changed.is_err() { return },
                    n = cr.read(&mut up) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if sw.write_all(&up[..n]).await.is_err() { return },
                    },
                    n = sr.read(&mut down) => match n {
                        Ok(0) | Err(_) => return,
                        Ok(n) => if cw.write_all(&down[..n]).await.is_err() { return },
                    },
                }
            }
        }
    }
}
