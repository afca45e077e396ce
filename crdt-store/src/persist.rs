//! The persistence writer: one task that group-commits updates from every room.
//!
//! Rooms send [`PersistCommand::Append`] through a bounded queue (a full queue makes the
//! sender wait: back-pressure, never loss). The writer takes everything queued, up to
//! `max_batch` commands, and writes it in transactions of at most `max_batch_bytes` of update
//! data each (an update larger than that goes alone), so no statement nears a database's
//! message limit (PostgreSQL's is 1 GiB). Only after a transaction commits does it fan out
//! the frames that were waiting for durability and answer the senders, in queue order.
//!
//! A failed write is retried with backoff while the failure is transient (the connection,
//! a lock, a full disk); nothing is fanned out or acknowledged until it succeeds. When the
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
use crate::room::{ApplyError, Outbound, Reach, Room};
use crate::storage::{LogEntry, Storage, StorageError};

/// A request to the writer.
pub(crate) enum PersistCommand {
    /// Log `update` for `room`; afterwards deliver `fanout` if present and answer `ack`.
    Append {
        room: Room,
        update: Bytes,
        fanout: Option<(Outbound, Reach)>,
        /// Told whether the update was committed, if the sender waits for it.
        ack: Option<oneshot::Sender<Result<(), ApplyError>>>,
    },
    /// Answer once every command queued before this one is committed.
    Flush(oneshot::Sender<()>),
}

/// Handle for sending to the writer. Cheap to clone.
pub(crate) type PersistQueue = mpsc::Sender<PersistCommand>;

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

/// What became of one append.
enum Outcome {
    Committed,
    /// The room was deleted before the update reached the database; it is dropped.
    RoomDeleted,
    /// The database refused this update for good.
    Refused(String),
}

/// Runs until every sender is dropped and the queue is drained.
pub(crate) async fn run_writer(
    storage: Storage,
    mut queue: mpsc::Receiver<PersistCommand>,
    limits: BatchLimits,
    metrics: crate::metrics::StoreMetrics,
) {
    let mut batch = Vec::with_capacity(limits.max_rows);
    while queue.recv_many(&mut batch, limits.max_rows).await > 0 {
        metrics.persist_backlog.set(queue.len() as f64);
        // Commands are handled in queue order: each run of appends (with the flushes among
        // them) is committed, then delivered, before the next run is written.
        let sizes: Vec<usize> = batch
            .iter()
            .map(|command| match command {
                PersistCommand::Append { update, .. } => update.len(),
                PersistCommand::Flush(_) => 0,
            })
            .collect();
        let mut commands = batch.drain(..);
        for len in byte_capped_runs(&sizes, limits.max_bytes) {
            let run: Vec<PersistCommand> = commands.by_ref().take(len).collect();
            commit_run(&storage, run, &metrics).await;
        }
    }
}

/// Writes one run of commands in one transaction (or, when the database refuses it, one
/// update at a time), then fans out, answers and counts, in queue order.
async fn commit_run(
    storage: &Storage,
    run: Vec<PersistCommand>,
    metrics: &crate::metrics::StoreMetrics,
) {
    // A deleted room's updates are dropped here, at the last moment: deletion marks the room
    // and then waits for the writer (a flush), so whatever is written after the mark never
    // lands after the room's rows were deleted.
    let live: Vec<usize> = run
        .iter()
        .enumerate()
        .filter_map(|(i, command)| match command {
            PersistCommand::Append { room, .. } if !room.is_deleted() => Some(i),
            _ => None,
        })
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = run
        .iter()
        .map(|command| match command {
            PersistCommand::Append { .. } => Some(Outcome::RoomDeleted),
            PersistCommand::Flush(_) => None,
        })
        .collect();
    let entry = |i: usize| match &run[i] {
        PersistCommand::Append { room, update, .. } => LogEntry {
            room: room.id(),
            update,
        },
        PersistCommand::Flush(_) => unreachable!("only appends are written"),
    };
    let started = Instant::now();
    let entries: Vec<LogEntry<'_>> = live.iter().map(|&i| entry(i)).collect();
    match write_with_retry(storage, &entries, metrics).await {
        Ok(()) => {
            for &i in &live {
                outcomes[i] = Some(Outcome::Committed);
            }
        }
        Err(err) => {
            // One of them (or more) can never be written: find it, write the others.
            warn!(error = %err, updates = entries.len(), "the database refused a batch; writing its updates one by one");
            for &i in &live {
                let single = [entry(i)];
                outcomes[i] = Some(match write_with_retry(storage, &single, metrics).await {
                    Ok(()) => Outcome::Committed,
                    Err(err) => {
                        metrics.persist_refused.increment(1);
                        error!(room = %single[0].room, bytes = single[0].update.len(), error = %err, "the database refused an update; it is dropped and its sender told");
                        if let PersistCommand::Append { room, .. } = &run[i] {
                            crate::registry::discard(room, "an update the database refused");
                        }
                        Outcome::Refused(err.to_string())
                    }
                });
            }
        }
    }
    drop(entries);
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Some(Outcome::Committed)))
        .count();
    if committed > 0 {
        metrics
            .persist_batch_seconds
            .record(started.elapsed().as_secs_f64());
        metrics.persist_batch_updates.record(committed as f64);
    }
    let mut last_room: Option<(RoomId, Room, u64)> = None;
    for (command, outcome) in run.into_iter().zip(outcomes) {
        match command {
            PersistCommand::Append {
                room,
                fanout,
                update,
                ack,
            } => {
                let result = match outcome {
                    Some(Outcome::Committed) => Ok(()),
                    Some(Outcome::Refused(reason)) => Err(ApplyError::NotPersisted(reason)),
                    _ => Err(ApplyError::RoomDeleted),
                };
                if result.is_ok() {
                    if let Some((outbound, reach)) = fanout {
                        room.deliver(outbound, &update, reach);
                    }
                    // Count per room run; consecutive updates of one room are common.
                    match &mut last_room {
                        Some((id, _, count)) if id == room.id() => *count += 1,
                        _ => {
                            if let Some((_, previous, count)) = last_room.take() {
                                previous.note_logged(count);
                            }
                            last_room = Some((room.id().clone(), room, 1));
                        }
                    }
                }
                if let Some(ack) = ack {
                    // The sender may have given up waiting (its socket closed).
                    let _ = ack.send(result);
                }
            }
            // The requester may have given up waiting; that is not an error.
            PersistCommand::Flush(done) => drop(done.send(())),
        }
    }
    if let Some((_, room, count)) = last_room {
        room.note_logged(count);
    }
}

/// Appends `entries` in one transaction, retrying transient failures with backoff until it
/// succeeds; answers the error the database refused them with for good.
async fn write_with_retry(
    storage: &Storage,
    entries: &[LogEntry<'_>],
    metrics: &crate::metrics::StoreMetrics,
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
