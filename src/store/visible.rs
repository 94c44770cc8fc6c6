//! How far the state has caught up with what was acknowledged.
//!
//! A write whose answer needs no read of the state (a new receipt answered from what
//! the writer had at hand; the sequences of RecordReceipts) is acknowledged as soon as
//! its batch is durable, before the batch reaches the state: the state's apply is then
//! off the client's path (BENCHMARKS.md, sixth session). So that no client ever reads
//! less than it was told, every call that may read the state first waits until the
//! state holds every batch that was durable when the call arrived ([`Visible::wait`]).
//! It usually holds them already; otherwise the wait is at most one batch's apply.

use tokio::sync::watch;

/// Batch numbers, as the committer counts them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Progress {
    /// The last batch that is durable (or that needed no sync).
    pub durable: u64,
    /// The last batch that is in the state (or that needed nothing there).
    pub applied: u64,
    /// A durable batch, some of it maybe acknowledged, could not be applied: the
    /// state will not catch up until a restart.
    pub stuck: bool,
}

/// What readers hold: see the module's comment.
#[derive(Clone, Debug)]
pub struct Visible(watch::Receiver<Progress>);

/// Why a read cannot be answered truthfully.
#[derive(Debug, thiserror::Error)]
#[error("the ledger's state is behind what was acknowledged (applying a durable batch failed); restart the server: it replays the journal")]
pub struct Behind;

impl Visible {
    pub(crate) fn new(rx: watch::Receiver<Progress>) -> Visible {
        Visible(rx)
    }

    /// Waits until the state holds every batch durable now. Refuses when it never
    /// will (a failed apply): reading then could deny an acknowledged write.
    pub async fn wait(&self) -> Result<(), Behind> {
        let target = {
            let now = self.0.borrow();
            if now.applied >= now.durable {
                return Ok(());
            }
            now.durable
        };
        let mut rx = self.0.clone();
        // An error means the committer is gone: nothing changes any more, and what
        // it last announced decides.
        let _ = rx.wait_for(|p| p.applied >= target || p.stuck).await;
        let applied = rx.borrow().applied;
        if applied >= target {
            Ok(())
        } else {
            Err(Behind)
        }
    }
}
