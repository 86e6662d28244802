//! What every HTTP double shares: an axum router served on 127.0.0.1
//! (QEMU's user net reaches the host's loopback, so 0.0.0.0 is never
//! needed) that stops when dropped, and the session-token header Coder's
//! SDKs send.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::Router;

/// A double's running server; dropping it stops the server.
pub struct LoopbackServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LoopbackServer {
    /// Serve `app` on a free port of 127.0.0.1.
    pub async fn start(app: Router) -> std::io::Result<LoopbackServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(LoopbackServer { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `Coder-Session-Token` header, as codersdk and agentsdk send the
/// session or agent token (`coder/coder codersdk/client.go`
/// `SessionTokenHeader`).
pub fn session_token(h: &HeaderMap) -> Option<&str> {
    h.get("Coder-Session-Token").and_then(|v| v.to_str().ok())
}
