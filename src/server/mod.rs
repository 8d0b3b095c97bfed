//! The accept loop: serves a router over TCP or TLS with the edge's bounds, which
//! `axum::serve` does not offer. A client gets `header_timeout` to send each request's
//! headers (slow-loris), a connection that moves no byte for `idle_timeout` is closed, and at
//! most `max_connections` are served at once (the rest wait in the kernel's accept queue).
//! The application knows each connection's peer (`App::for_peer`): routed handlers see it as
//! `ConnectInfo<SocketAddr>`, the lane's edge gets it directly. Shutdown stops accepting and lets the
//! requests in flight finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::tls::ServerTls;

mod conn_timer;
use conn_timer::ConnectionTimer;

/// The edge's bounds (settings `TENANT_VAULT_HTTP_*`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `shutdown` resolves, then
/// waits for the connections' requests in flight to finish.
pub async fn serve(
    listener: TcpListener,
    app: crate::api::App,
    tls: Option<Arc<ServerTls>>,
    edge: EdgeSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(edge.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A permit first: over the cap, connections wait in the accept queue, not in memory.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.for_peer(peer));
        let builder = connection_builder(edge.header_timeout);
        let (tls, watcher) = (tls.clone(), graceful.watcher());
        let idle = edge.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let served = match tls {
                None => {
                    let io = TokioIo::new(IdleTimeout::new(tcp, idle));
                    watcher
                        .watch(builder.serve_connection(io, service).into_owned())
                        .await
                }
                Some(tls) => {
                    // Bounded by the handshake timeout; a failure ends only this connection.
                    let stream = match tls.accept(tcp).await {
                        Ok(stream) => stream,
                        Err(e) => {
                            metrics::counter!("tenant_vault_tls_handshake_failures_total")
                                .increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let io = TokioIo::new(IdleTimeout::new(stream, idle));
                    watcher
                        .watch(builder.serve_connection(io, service).into_owned())
                        .await
                }
            };
            if let Err(e) = served {
                // Timeouts, resets and bad requests end one connection; nothing to act on.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's settings for one connection, with a timer of its own (`ConnectionTimer`).
fn connection_builder(header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let timer = ConnectionTimer::default();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(timer.clone())
        .header_read_timeout(header_timeout);
    builder.http2().timer(timer);
    builder
}

/// A stream that fails with `TimedOut` once no byte has moved either way for `idle`.
/// The deadline is checked only when a read or write would wait, so the hot path pays an
/// `Instant::now()` per successful read or write, not a timer reset.
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    last_activity: Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            last_activity: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Ready with an error when the connection has been idle too long; else arms the timer.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_activity + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.deadline
                .as_mut()
                .reset(tokio::time::Instant::from_std(due));
        }
    }
}

impl<S> IdleTimeout<S> {
    /// A read's or write's outcome: one that moved a byte (`moved`) is activity; one that
    /// must wait checks the idle deadline.
    fn settle<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
        moved: impl FnOnce(&io::Result<T>) -> bool,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                if moved(&result) {
                    self.last_activity = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let after = buf.filled().len();
        this.settle(cx, polled, |_| after > before)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.settle(cx, polled, |r| matches!(r, Ok(n) if *n > 0))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.settle(cx, polled, |r| matches!(r, Ok(n) if *n > 0))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
