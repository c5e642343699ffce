//! The history writer: every message save and read/delivered mark goes through one task that
//! commits them in batches (group commit). A sender waits for the commit of the batch holding
//! its write, so a message acknowledged to its client is durable, and many senders share one
//! transaction instead of each paying for their own: SQLite has one writer at a time anyway,
//! and a commit per message would cap chat throughput at the commit rate.
//!
//! Order is kept: a mark queued after a save lands in the same or a later transaction.
//! The queue is bounded (`chat.writer_queue`): when the store falls behind, senders wait for
//! room, which slows their connections (and so the clients) instead of growing memory.

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{ChatWrite, Store, StoreError, WriteOutcome};

/// Most writes in one transaction: large enough to amortise a commit, small enough that one
/// batch does not hold SQLite's write lock for long.
const MAX_BATCH: usize = 256;

/// How long a busy writer lets writes gather before a commit.
const COMMIT_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the server is shutting down")]
    Closed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    write: ChatWrite,
    done: oneshot::Sender<Result<WriteOutcome, WriteError>>,
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl Writer {
    /// Spawns the writer task on `tracker`; it ends on `shutdown` once the queue is empty.
    pub fn start(
        store: Store,
        capacity: usize,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Writer {
        let (jobs, rx) = mpsc::channel(capacity.max(1));
        tracker.spawn(run(store, rx, shutdown));
        Writer { jobs }
    }

    /// Queues `write` and waits until it is committed (or failed).
    pub async fn write(&self, write: ChatWrite) -> Result<WriteOutcome, WriteError> {
        self.submit(write).await?.outcome().await
    }

    /// Queues `write` (waiting only for room in the queue) and returns what resolves when it
    /// is committed: a connection can queue its next message before this one's commit, and
    /// writes queued by one sender commit in the order it queued them.
    pub async fn submit(&self, write: ChatWrite) -> Result<Pending, WriteError> {
        let (done, outcome) = oneshot::channel();
        self.jobs
            .send(Job { write, done })
            .await
            .map_err(|_| WriteError::Closed)?;
        Ok(Pending(Settling::Waiting(outcome)))
    }
}

/// A queued write's outcome, once it is committed.
#[derive(Debug)]
pub struct Pending(Settling);

#[derive(Debug)]
enum Settling {
    Waiting(oneshot::Receiver<Result<WriteOutcome, WriteError>>),
    Settled(Result<WriteOutcome, WriteError>),
}

impl Pending {
    /// Waits for the commit and keeps its outcome. Cancel-safe: a receiver polled by
    /// reference keeps its value until it resolves, and then it is stored at once.
    pub async fn settled(&mut self) {
        if let Settling::Waiting(receiver) = &mut self.0 {
            let outcome = receiver.await.unwrap_or(Err(WriteError::Closed));
            self.0 = Settling::Settled(outcome);
        }
    }

    /// Whether the commit is done, without waiting.
    pub fn is_settled(&mut self) -> bool {
        match &mut self.0 {
            Settling::Settled(_) => true,
            Settling::Waiting(receiver) => match receiver.try_recv() {
                Ok(outcome) => {
                    self.0 = Settling::Settled(outcome);
                    true
                }
                Err(oneshot::error::TryRecvError::Empty) => false,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.0 = Settling::Settled(Err(WriteError::Closed));
                    true
                }
            },
        }
    }

    /// The outcome, waiting for the commit if it is not done yet.
    pub async fn outcome(self) -> Result<WriteOutcome, WriteError> {
        match self.0 {
            Settling::Settled(outcome) => outcome,
            Settling::Waiting(receiver) => receiver.await.unwrap_or(Err(WriteError::Closed)),
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut busy = false;
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => job,
            () = shutdown.cancelled() => {
                // Finish what was queued; later senders get `Closed`.
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first);
        // Each transaction costs a few round trips to the database thread whatever its size,
        // so under load the writer lets writes gather for a moment before committing: when
        // the last batch held more than one write (others were waiting), it waits one timer
        // tick; otherwise it only lets the runtime's other tasks run once. A quiet server adds
        // no wait; a busy one trades a millisecond of latency for many fewer commits.
        if busy && !shutdown.is_cancelled() {
            tokio::time::sleep(COMMIT_WINDOW).await;
        } else {
            tokio::task::yield_now().await;
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        busy = batch.len() > 1;
        commit(&store, &mut batch).await;
    }
}

/// Commits `batch` in one transaction; if that fails, each write alone, so one bad write
/// (or a transient error) fails only itself.
async fn commit(store: &Store, batch: &mut Vec<Job>) {
    let writes: Vec<ChatWrite> = batch.iter().map(|job| job.write.clone()).collect();
    match store.apply_chat_writes(&writes).await {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let _ = job.done.send(Ok(outcome));
            }
        }
        Err(error) if batch.len() == 1 => {
            let job = batch.pop().expect("one job");
            let _ = job.done.send(Err(error.into()));
        }
        Err(error) => {
            tracing::warn!(%error, writes = batch.len(), "a history batch failed; retrying each write alone");
            for job in batch.drain(..) {
                let result = store
                    .apply_chat_writes(std::slice::from_ref(&job.write))
                    .await
                    .map(|mut outcomes| outcomes.pop().unwrap_or(WriteOutcome::Done))
                    .map_err(WriteError::from);
                let _ = job.done.send(result);
            }
        }
    }
}
