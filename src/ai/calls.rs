//! The model calls in progress. A call whose prompt has left must end with its audit entry,
//! also when the server stops: each runs on a task of its own that a dropped connection
//! does not cancel, and a stopping server cuts what is still waiting on a model (the entry
//! then says so) and waits for every entry to be written before it closes the stores.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Calls {
    stopping: CancellationToken,
    tracker: TaskTracker,
}

impl Calls {
    /// Runs `call` on a task of its own, to its end even if the caller stops waiting.
    /// `None` when the task panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        match self.tracker.spawn(call).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "a model call's task failed");
                None
            }
        }
    }

    /// Starts `call` on a task of its own, for a caller that reads its progress elsewhere.
    pub fn spawn(&self, call: impl Future<Output = ()> + Send + 'static) {
        drop(self.tracker.spawn(call));
    }

    /// Resolves once the server is stopping: what waits on a model then stops waiting.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Cuts the calls still waiting on a model and waits up to `within` for every call to
    /// end (its entry written); whether all did. Calls started after this fail at once.
    pub async fn stop(&self, within: Duration) -> bool {
        self.stopping.cancel();
        self.tracker.close();
        let ended = tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok();
        if !ended {
            tracing::error!(
                calls = self.tracker.len(),
                "model calls still running at shutdown; their audit entries may be missing"
            );
        }
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_stop_cuts_waiting_calls_and_waits_for_their_ends() {
        let calls = Calls::default();
        let ended = Arc::new(AtomicBool::new(false));
        let (c, e) = (calls.clone(), ended.clone());
        calls.spawn(async move {
            tokio::select! {
                () = c.stopping() => {}
                () = tokio::time::sleep(Duration::from_secs(3600)) => panic!("not cut"),
            }
            // The end's own work (its entry) still runs after the cut.
            tokio::task::yield_now().await;
            e.store(true, Ordering::SeqCst);
        });
        assert!(!calls.is_stopping());
        assert!(calls.stop(Duration::from_secs(30)).await);
        assert!(ended.load(Ordering::SeqCst));
        assert!(calls.is_stopping());
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_cancel_its_call() {
        let calls = Calls::default();
        let ended = Arc::new(AtomicBool::new(false));
        let e = ended.clone();
        let call = calls.run(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            e.store(true, Ordering::SeqCst);
        });
        // The caller gives up before the call ends.
        assert!(tokio::time::timeout(Duration::from_millis(1), call)
            .await
            .is_err());
        assert!(calls.stop(Duration::from_secs(30)).await);
        assert!(ended.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_call_that_does_not_end_is_reported() {
        let calls = Calls::default();
        calls.spawn(std::future::pending());
        assert!(!calls.stop(Duration::from_millis(20)).await);
    }
}
