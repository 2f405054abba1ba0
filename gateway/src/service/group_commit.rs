//! Group commit for audit entries that stand alone — reads, denials, invalid requests,
//! everything [`App::record`](super::App) writes outside a transaction of its own. Under
//! load, each such request used to take SQLite's write lock and wait for its own fsync;
//! sixteen concurrent readers spent most of their time in the lock's busy-wait. One writer
//! task now takes every entry waiting, appends them in arrival order in one transaction,
//! commits once, and only then answers each request.
//!
//! It owns that queue and its writer. It must not acknowledge an entry before the
//! transaction holding it committed, nor commit part of a batch: a batch that fails fails
//! every request in it, and none of its entries is in the log.

use anyhow::Context;
use sluice_audit::AuditEvent;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::store::Store;

/// The most entries one transaction takes; more wait for the next.
const MAX_BATCH: usize = 512;

struct Pending {
    event: AuditEvent,
    at: OffsetDateTime,
    done: oneshot::Sender<Result<(), String>>,
}

/// The queue in front of the one writer task.
#[derive(Debug, Clone)]
pub(crate) struct AuditBatcher {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl AuditBatcher {
    /// Starts the writer on the current tokio runtime; it stops when every handle is gone.
    pub(crate) fn start(store: Store) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Pending>(4 * MAX_BATCH);
        tokio::spawn(async move {
            while let Some(first) = receiver.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(pending) => batch.push(pending),
                        Err(_) => break,
                    }
                }
                let (entries, waiting): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|pending| ((pending.event, pending.at), pending.done)).unzip();
                let outcome = write(&store, entries).await.map_err(|error| format!("{error:#}"));
                for done in waiting {
                    // A request that went away no longer waits; its entry is in the log.
                    let _ = done.send(outcome.clone());
                }
            }
        });
        Self { sender }
    }

    /// Appends `event` (at `at`) and returns once the transaction holding it committed.
    pub(crate) async fn record(&self, event: AuditEvent, at: OffsetDateTime) -> anyhow::Result<()> {
        let (done, committed) = oneshot::channel();
        self.sender.send(Pending { event, at, done }).await.map_err(|_| anyhow::anyhow!("the audit writer stopped"))?;
        committed
            .await
            .map_err(|_| anyhow::anyhow!("the audit writer stopped before committing"))?
            .map_err(|error| anyhow::anyhow!("appending audit entries: {error}"))
    }
}

/// One transaction for the whole batch, in arrival order.
async fn write(store: &Store, entries: Vec<(AuditEvent, OffsetDateTime)>) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    for (event, at) in entries {
        Store::append_audit(&mut tx, event, at).await?;
    }
    tx.commit().await.context("committing a batch of audit entries")
}
