//! The persistence writer: one task that group-commits updates from every room.
//!
//! Rooms send [`PersistCommand::Append`] through a bounded queue (a full queue makes the
//! sender wait: back-pressure, never loss). The writer takes everything queued, up to
//! `max_batch`, writes it in one transaction, and only then fans out the frames that were
//! waiting for durability, in queue order. A failed write is retried with backoff; nothing is
//! fanned out or acknowledged until it succeeds.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::error;

use crate::ids::RoomId;
use crate::room::{Outbound, Reach, Room};
use crate::storage::{LogEntry, Storage};

/// A request to the writer.
pub(crate) enum PersistCommand {
    /// Log `update` for `room`; afterwards deliver `fanout` if present.
    Append {
        room: Room,
        update: Bytes,
        fanout: Option<(Outbound, Reach)>,
    },
    /// Answer once every command queued before this one is committed.
    Flush(oneshot::Sender<()>),
}

/// Handle for sending to the writer. Cheap to clone.
pub(crate) type PersistQueue = mpsc::Sender<PersistCommand>;

/// Runs until every sender is dropped and the queue is drained.
pub(crate) async fn run_writer(
    storage: Storage,
    mut queue: mpsc::Receiver<PersistCommand>,
    max_batch: usize,
    metrics: crate::metrics::StoreMetrics,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while queue.recv_many(&mut batch, max_batch).await > 0 {
        metrics.persist_backlog.set(queue.len() as f64);
        let entries: Vec<LogEntry<'_>> = batch
            .iter()
            .filter_map(|command| match command {
                PersistCommand::Append { room, update, .. } => Some(LogEntry {
                    room: room.id(),
                    update,
                }),
                PersistCommand::Flush(_) => None,
            })
            .collect();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        while let Err(err) = storage.append(&entries).await {
            error!(error = %err, updates = entries.len(), "persisting updates failed; retrying");
            metrics.persist_failures.increment(1);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        let appended = entries.len();
        drop(entries);
        if appended > 0 {
            metrics
                .persist_batch_seconds
                .record(started.elapsed().as_secs_f64());
            metrics.persist_batch_updates.record(appended as f64);
        }
        let mut last_room: Option<(RoomId, Room, u64)> = None;
        for command in batch.drain(..) {
            match command {
                PersistCommand::Append {
                    room,
                    fanout,
                    update,
                } => {
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
                // The requester may have given up waiting; that is not an error.
                PersistCommand::Flush(done) => drop(done.send(())),
            }
        }
        if let Some((_, room, count)) = last_room {
            room.note_logged(count);
        }
    }
}
