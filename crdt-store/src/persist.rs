//! The persistence writer: one task that group-commits updates from every room.
//!
//! Rooms send [`PersistCommand::Append`] through a bounded queue (a full queue makes the
//! sender wait: back-pressure, never loss). The writer takes everything queued, up to
//! `max_batch` commands, and writes it in transactions of at most `max_batch_bytes` of update
//! data each (an update larger than that goes alone), so no statement nears a database's
//! message limit (PostgreSQL's is 1 GiB). Only after a transaction commits does it report
//! the outcome of each append, in queue order, to its [`CommitListener`] (the registry),
//! which fans out the frames that were waiting for durability and answers the senders. The
//! writer knows rooms by id only: what a room attaches to an append is opaque to it.
//!
//! A failed write is retried with backoff while the failure is transient (the connection,
//! a lock, a full disk); nothing is reported until it succeeds. When the
//! database refuses a transaction for what it holds ([`StorageError::is_permanent`]), the
//! updates are written one by one, so the one that can never be written is found, reported
//! (log and `tandem_persist_refused_total`) and refused to its sender, and every other
//! room's updates go on: one poisoned update must not stall every room's fan-out.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{error, warn};

use crate::ids::RoomId;
use crate::metrics::StoreMetrics;
use crate::storage::{LogEntry, Storage, StorageError};

/// A request to the writer. `T` is what the sender attaches to an append and gets back, in
/// [`CommitListener::settled`], once the writer is done with it; the writer never looks
/// inside it.
pub(crate) enum PersistCommand<T> {
    /// Log an update.
    Append(Append<T>),
    /// Answer once every command queued before this one is committed.
    Flush(oneshot::Sender<()>),
}

/// One update to log.
pub(crate) struct Append<T> {
    /// The room it belongs to.
    pub(crate) room: RoomId,
    /// The v1 update.
    pub(crate) update: Bytes,
    /// The sender's own, handed back with the outcome.
    pub(crate) ticket: T,
}

/// Handle for sending to the writer. Cheap to clone.
pub(crate) type PersistQueue<T> = mpsc::Sender<PersistCommand<T>>;

/// What became of one append.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// It is in the database.
    Committed,
    /// It was withdrawn before it reached the database (its room was deleted); it is dropped.
    Withdrawn,
    /// The database refused this update for good; why.
    Refused(String),
}

/// Whoever owns the rooms hears from the writer through this (the registry implements it):
/// the writer only writes, and everything that follows a commit (fan-out, answers,
/// compaction) is the listener's. Every method runs on the writer's task, between two
/// transactions, so what it does is done before the next one is written.
pub(crate) trait CommitListener: Send + 'static {
    /// What senders attach to their appends.
    type Ticket: Send + 'static;

    /// Whether the append is withdrawn: asked right before its transaction, at the last
    /// moment, so that a deletion (which withdraws its room's appends, then waits for the
    /// writer) never has a write of its room land after the room's rows were deleted.
    fn withdrawn(&self, ticket: &Self::Ticket) -> bool;

    /// The database refused the append for good: told at once, before the rest of its run
    /// is written one by one.
    fn refused(&self, ticket: &Self::Ticket);

    /// What became of every append of one run, in queue order, once its transaction is
    /// over (flushes among them are answered right after).
    fn settled(&self, appends: Vec<(Append<Self::Ticket>, Outcome)>);
}

/// How the writer groups commands into transactions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    /// Most commands taken from the queue at once.
    pub(crate) max_rows: usize,
    /// Most bytes of update data in one transaction (an update larger than this goes alone).
    pub(crate) max_bytes: usize,
}

/// Splits `sizes` (the update sizes of consecutive appends) into runs whose total is at most
/// `max_bytes`; a size larger than `max_bytes` forms a run of its own. Answers the length of
/// each run, in order.
pub(crate) fn byte_capped_runs(sizes: &[usize], max_bytes: usize) -> Vec<usize> {
    let mut runs = Vec::new();
    let (mut len, mut bytes) = (0usize, 0usize);
    for &size in sizes {
        if len > 0 && bytes.saturating_add(size) > max_bytes {
            runs.push(len);
            (len, bytes) = (0, 0);
        }
        len += 1;
        bytes = bytes.saturating_add(size);
    }
    if len > 0 {
        runs.push(len);
    }
    runs
}

/// Runs until every sender is dropped and the queue is drained.
pub(crate) async fn run_writer<L: CommitListener>(
    storage: Storage,
    mut queue: mpsc::Receiver<PersistCommand<L::Ticket>>,
    limits: BatchLimits,
    metrics: StoreMetrics,
    listener: L,
) {
    let mut batch = Vec::with_capacity(limits.max_rows);
    while queue.recv_many(&mut batch, limits.max_rows).await > 0 {
        metrics.persist_backlog.set(queue.len() as f64);
        // Commands are handled in queue order: each run of appends (with the flushes among
        // them) is committed, then settled, before the next run is written.
        let sizes: Vec<usize> = batch
            .iter()
            .map(|command| match command {
                PersistCommand::Append(append) => append.update.len(),
                PersistCommand::Flush(_) => 0,
            })
            .collect();
        let mut commands = batch.drain(..);
        for len in byte_capped_runs(&sizes, limits.max_bytes) {
            let run: Vec<PersistCommand<L::Ticket>> = commands.by_ref().take(len).collect();
            commit_run(&storage, run, &metrics, &listener).await;
        }
    }
}

/// Writes one run of commands in one transaction (or, when the database refuses it, one
/// update at a time), then counts, hands the outcomes to `listener` and answers the
/// flushes.
async fn commit_run<L: CommitListener>(
    storage: &Storage,
    run: Vec<PersistCommand<L::Ticket>>,
    metrics: &StoreMetrics,
    listener: &L,
) {
    let mut appends = Vec::with_capacity(run.len());
    let mut flushes = Vec::new();
    for command in run {
        match command {
            PersistCommand::Append(append) => appends.push(append),
            PersistCommand::Flush(done) => flushes.push(done),
        }
    }
    // A withdrawn append is dropped here, at the last moment (see
    // `CommitListener::withdrawn`).
    let live: Vec<usize> = (0..appends.len())
        .filter(|&i| !listener.withdrawn(&appends[i].ticket))
        .collect();
    let mut outcomes: Vec<Outcome> = appends.iter().map(|_| Outcome::Withdrawn).collect();
    let entry = |i: usize| LogEntry {
        room: &appends[i].room,
        update: &appends[i].update,
    };
    let started = Instant::now();
    let entries: Vec<LogEntry<'_>> = live.iter().map(|&i| entry(i)).collect();
    match write_with_retry(storage, &entries, metrics).await {
        Ok(()) => {
            for &i in &live {
                outcomes[i] = Outcome::Committed;
            }
        }
        Err(err) => {
            // One of them (or more) can never be written: find it, write the others.
            warn!(error = %err, updates = entries.len(), "the database refused a batch; writing its updates one by one");
            for &i in &live {
                let single = [entry(i)];
                outcomes[i] = match write_with_retry(storage, &single, metrics).await {
                    Ok(()) => Outcome::Committed,
                    Err(err) => {
                        metrics.persist_refused.increment(1);
                        error!(room = %single[0].room, bytes = single[0].update.len(), error = %err, "the database refused an update; it is dropped and its sender told");
                        listener.refused(&appends[i].ticket);
                        Outcome::Refused(err.to_string())
                    }
                };
            }
        }
    }
    drop(entries);
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Committed))
        .count();
    if committed > 0 {
        metrics
            .persist_batch_seconds
            .record(started.elapsed().as_secs_f64());
        metrics.persist_batch_updates.record(committed as f64);
    }
    if !appends.is_empty() {
        listener.settled(appends.into_iter().zip(outcomes).collect());
    }
    for done in flushes {
        // The requester may have given up waiting; that is not an error.
        let _ = done.send(());
    }
}

/// Appends `entries` in one transaction, retrying transient failures with backoff until it
/// succeeds; answers the error the database refused them with for good.
async fn write_with_retry(
    storage: &Storage,
    entries: &[LogEntry<'_>],
    metrics: &StoreMetrics,
) -> Result<(), StorageError> {
    let mut backoff = Duration::from_millis(50);
    loop {
        match storage.append(entries).await {
            Ok(()) => return Ok(()),
            Err(err) if err.is_permanent() => {
                metrics.persist_failures.increment(1);
                return Err(err);
            }
            Err(err) => {
                error!(error = %err, updates = entries.len(), "persisting updates failed; retrying");
                metrics.persist_failures.increment(1);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::byte_capped_runs;

    #[test]
    fn runs_are_capped_by_bytes_and_an_oversized_update_goes_alone() {
        let check = |sizes: &[usize], max: usize, expected: &[usize]| {
            assert_eq!(
                byte_capped_runs(sizes, max),
                expected,
                "{sizes:?} under {max}"
            );
        };
        check(&[], 10, &[]);
        check(&[3, 3, 3], 10, &[3]);
        check(&[4, 4, 4], 10, &[2, 1]);
        check(&[10, 1], 10, &[1, 1]);
        check(&[1, 25, 1, 1], 10, &[1, 1, 2]);
        check(&[25], 10, &[1]);
        check(&[5, 5, 5, 5], 10, &[2, 2]);
    }
}
