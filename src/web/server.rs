//! The accept loop: TCP, then a TLS handshake with a deadline, then HTTP/1.1 or HTTP/2 on the
//! same port. On shutdown the listener closes first, open connections get a grace period to
//! finish, and only then do the stores flush and close (done by the caller).

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once; past it, new ones are closed at once. Each holds a descriptor
/// and buffers: without a bound, idle clients could take them all.
pub const MAX_CONNECTIONS: usize = 4096;
/// The least idle time a connection is given (see [`Timeouts::idle`]).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// When a connection last read or wrote a byte, and how many of its requests are in
/// progress: what decides that it is idle.
#[derive(Default)]
struct Activity {
    /// Milliseconds since `start` at the last byte.
    last_ms: std::sync::atomic::AtomicU64,
    in_progress: std::sync::atomic::AtomicUsize,
    served: std::sync::atomic::AtomicBool,
}

impl Activity {
    fn touch(&self, start: tokio::time::Instant) {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long it has been idle, or `None` while a request is in progress.
    fn idle(&self, start: tokio::time::Instant) -> Option<Duration> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.in_progress.load(Relaxed) > 0 {
            return None;
        }
        let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Relaxed)),
        ))
    }
}

/// A stream that notes every byte it moves in its connection's [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    start: tokio::time::Instant,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch(self.start);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(self.start);
        }
        r
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch(self.start);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request in progress from its arrival until its answer's head is ready.
struct InProgress(Arc<Activity>);

impl InProgress {
    fn new(activity: &Arc<Activity>) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        activity.in_progress.fetch_add(1, Relaxed);
        activity.served.store(true, Relaxed);
        Self(activity.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0
            .in_progress
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long the server waits, for clients and for itself.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A request's headers must arrive within this.
    pub header: Duration,
    /// Open connections get this long to finish at shutdown.
    pub grace: Duration,
    /// A connection with no request in progress and nothing read or written for this long
    /// is closed (a kept-alive HTTP/1.1 or HTTP/2 connection a client left open). Longer
    /// than an answer's stream may stay silent.
    pub idle: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
    timeouts: Timeouts,
) {
    let grace = timeouts.grace;
    let header_timeout = timeouts.header;
    let idle_timeout = timeouts.idle;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once, before any handshake work; said at most once a minute.
            if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "connection limit reached; closing new connections"
                );
                refused_logged = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let start = tokio::time::Instant::now();
            let activity = Arc::new(Activity::default());
            let counted = activity.clone();
            let svc = router
                .map_request(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                })
                .map_future(move |answer| {
                    let in_progress = InProgress::new(&counted);
                    async move {
                        let res = answer.await;
                        drop(in_progress);
                        res
                    }
                });
            let tls = Watched {
                inner: tls,
                activity: activity.clone(),
                start,
            };
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that trickles its headers (slowloris) is cut off; HTTP/2 streams per
            // connection are capped.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(100);
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(svc));
            let conn = watcher.watch(conn.into_owned());
            tokio::pin!(conn);
            // Closed when idle: before its first request, after the header timeout (a client
            // that connects and says nothing, on either protocol); after it, once nothing
            // was in progress nor moved for the idle timeout. Dropping the connection closes it.
            loop {
                let limit = if activity.served.load(std::sync::atomic::Ordering::Relaxed) {
                    idle_timeout
                } else {
                    header_timeout
                };
                let wait = match activity.idle(start) {
                    Some(idle) if idle >= limit => {
                        tracing::debug!(%peer, "idle connection closed");
                        break;
                    }
                    Some(idle) => limit - idle,
                    None => limit,
                };
                tokio::select! {
                    ended = &mut conn => {
                        if let Err(e) = ended {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period over; closing remaining connections");
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment this is created (tokio installs the handlers
/// then, not when first awaited). The server creates it before it announces that it listens,
/// so a stop that arrives right after is a graceful one, not the default action's kill.
pub struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; needs a running tokio runtime.
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

pub type Peer = SocketAddr;
