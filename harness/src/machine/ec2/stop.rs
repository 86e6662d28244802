//! [`Stop`]: a cooperative stop request (Ctrl-C during `harness sweep`):
//! work checks it between deletions, waits race against it, so the call in
//! flight always completes and nothing is abandoned half-sent.

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable stop flag; all clones see [`Stop::stop`].
#[derive(Debug, Clone)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    pub fn new() -> Stop {
        Stop {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Ask the work to stop after the call in flight.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Stop::stop`] was called (at once if it already was).
    pub async fn stopped(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Run `fut` unless stopped first: `None` = stopped (`fut` dropped).
    pub async fn race<T>(&self, fut: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            _ = self.stopped() => None,
            v = fut => Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_is_seen_by_clones_and_cuts_waits() {
        let s = Stop::new();
        let c = s.clone();
        assert!(!c.is_stopped());
        assert_eq!(c.race(async { 1 }).await, Some(1));
        let waiting = tokio::spawn(async move {
            c.race(tokio::time::sleep(std::time::Duration::from_secs(3600)))
                .await
        });
        s.stop();
        assert!(s.is_stopped());
        assert_eq!(waiting.await.unwrap(), None);
        assert_eq!(s.race(async { 2 }).await, None, "already stopped");
    }
}
