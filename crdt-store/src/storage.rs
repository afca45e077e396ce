//! The database side of a room: the update log, the snapshot, versions.
//!
//! Everything here is plain SQL through sea-orm and works the same on SQLite and PostgreSQL.
//! Document bytes are opaque to this module except in [`Storage::compact`], which merges
//! them with `yrs` off the async threads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, Transact, Update};

use crate::entity::{room_snapshot, room_update, room_version};
use crate::ids::RoomId;
use crate::version::{VersionInfo, VersionKind};

/// Errors from the database or from stored bytes.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    /// Stored bytes did not decode or apply: the database holds something this server did
    /// not write. The room is not served rather than served empty.
    #[error("stored document data for room {room} is corrupt: {detail}")]
    Corrupt {
        /// The room whose data is corrupt.
        room: RoomId,
        /// What failed.
        detail: String,
    },
    /// A blocking task died (it panicked).
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The stored document nests deeper than the configured limit; it is not served.
    #[error("stored document of room {room} cannot be opened: {cause}")]
    TooDeep {
        /// The room.
        room: RoomId,
        /// The limit it exceeds.
        cause: crate::document::TooDeep,
    },
    /// The room was deleted; nothing more is stored for it.
    #[error("the room was deleted")]
    RoomDeleted,
}

impl StorageError {
    /// Whether the database refused the statement for what it holds, so sending it again
    /// cannot succeed: a value too large or of the wrong type, a violated constraint or
    /// trigger, a program limit (PostgreSQL's 1 GiB message among them), or bytes the
    /// driver could not encode. Connection failures, timeouts, lock contention, a full disk
    /// and anything unrecognised count as transient: they are retried.
    pub fn is_permanent(&self) -> bool {
        use sea_orm::RuntimeErr;
        use sea_orm::sqlx::Error as SqlxError;
        let Self::Database(
            DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)),
        ) = self
        else {
            return false;
        };
        match err.as_ref() {
            SqlxError::Encode(_) => true,
            SqlxError::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db
                    .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                    .is_some()
                {
                    // SQLite's primary result code is the low byte of the extended one:
                    // SQLITE_TOOBIG, SQLITE_CONSTRAINT (triggers included), SQLITE_MISMATCH.
                    return code
                        .parse::<i32>()
                        .is_ok_and(|extended| matches!(extended & 0xff, 18..=20));
                }
                // PostgreSQL SQLSTATE classes: data exception, integrity constraint
                // violation, program limit exceeded.
                matches!(code.get(..2), Some("22" | "23" | "54"))
            }
            _ => false,
        }
    }
}

/// What is stored for one room, in the order it must be applied.
pub struct StoredRoom {
    /// The compacted snapshot, if the room was ever compacted: what the folded rows show.
    pub snapshot: Option<Vec<u8>>,
    /// The folded rows still waiting for a dependency, as they were logged, applied after the
    /// snapshot.
    pub pending: Vec<Vec<u8>>,
    /// Updates logged after the snapshot, oldest first.
    pub updates: Vec<Vec<u8>>,
}

impl StoredRoom {
    /// Every stored update in the order it must be applied: snapshot, waiting rows, log.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.snapshot
            .iter()
            .chain(self.pending.iter())
            .chain(self.updates.iter())
            .map(Vec::as_slice)
    }
}

/// One update to append to a room's log.
pub struct LogEntry<'a> {
    /// The room it belongs to.
    pub room: &'a RoomId,
    /// The v1 update bytes.
    pub update: &'a [u8],
}

/// A handle to the database. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Storage {
    db: DatabaseConnection,
}

/// Milliseconds since the Unix epoch, as stored in `created_at` columns. The store's own
/// reading of the wall clock (log rows, snapshots, versions); the server has its own clock,
/// passed in where it needs one.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Storage {
    /// The store on `db`, a connection the binary opened (with [`Storage::connect_options`])
    /// and whose schema it brought up to date (the `migrations` crate): the store neither
    /// connects nor migrates.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// How a connection to `url` (`sqlite://…` or `postgres://…`) must be opened for what the
    /// store promises: a bounded pool, and on SQLite the write-ahead log (readers never wait
    /// for the writer), a generous busy timeout (a writer waits for another, a compaction or a
    /// second node, rather than failing) and creating the file when missing.
    ///
    /// `synchronous_full` makes SQLite sync its write-ahead log on every commit (what the
    /// durable mode promises across power loss); PostgreSQL follows its own `fsync` setting.
    pub fn connect_options(url: &str, synchronous_full: bool) -> ConnectOptions {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(if synchronous_full {
                        SqliteSynchronous::Full
                    } else {
                        SqliteSynchronous::Normal
                    })
                    .busy_timeout(Duration::from_secs(30))
                    .create_if_missing(true)
            });
        options
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        Ok(self.db.ping().await?)
    }

    /// Reads a room's snapshot and its log, consistently even while another node compacts
    /// the same room: compaction moves `last_update_id` forward in the same transaction that
    /// deletes the merged rows, so if the snapshot's marker is unchanged after reading the
    /// log, no rows were deleted between the two reads.
    ///
    /// The log is every row of the room still there, not only those with ids above the
    /// marker: on PostgreSQL a row can commit after one with a higher id (two nodes' group
    /// commits interleave), so a compaction may have merged ids above a row it never saw.
    /// Compaction deletes exactly the rows it merged; whatever remains is unmerged.
    pub async fn load(&self, room: &RoomId) -> Result<StoredRoom, StorageError> {
        loop {
            let snapshot = room_snapshot::Entity::find_by_id(room.as_str())
                .one(&self.db)
                .await?;
            let after = snapshot.as_ref().map_or(0, |s| s.last_update_id);
            let updates = room_update::Entity::find()
                .filter(room_update::Column::RoomId.eq(room.as_str()))
                .order_by_asc(room_update::Column::Id)
                .all(&self.db)
                .await?;
            let marker_now = room_snapshot::Entity::find_by_id(room.as_str())
                .select_only()
                .column(room_snapshot::Column::LastUpdateId)
                .into_tuple::<i64>()
                .one(&self.db)
                .await?
                .unwrap_or(0);
            if marker_now == after {
                let (snapshot, pending) = match snapshot {
                    Some(s) => (Some(s.data), s.pending),
                    None => (None, None),
                };
                let pending = match pending {
                    Some(bytes) => decode_waiting(&bytes).map_err(|e| StorageError::Corrupt {
                        room: room.clone(),
                        detail: format!("waiting rows: {e}"),
                    })?,
                    None => Vec::new(),
                };
                return Ok(StoredRoom {
                    snapshot,
                    pending,
                    updates: updates.into_iter().map(|u| u.data).collect(),
                });
            }
        }
    }

    /// Appends updates in one transaction: either all are durable or none is.
    pub async fn append(&self, entries: &[LogEntry<'_>]) -> Result<(), StorageError> {
        if entries.is_empty() {
            return Ok(());
        }
        let created_at = now_millis();
        let rows = entries.iter().map(|e| room_update::ActiveModel {
            room_id: Set(e.room.as_str().to_owned()),
            data: Set(e.update.to_vec()),
            created_at: Set(created_at),
            ..Default::default()
        });
        let txn = self.db.begin().await?;
        room_update::Entity::insert_many(rows).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Number of log rows not merged into the snapshot.
    pub async fn log_len(&self, room: &RoomId) -> Result<u64, StorageError> {
        Ok(room_update::Entity::find()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .count(&self.db)
            .await?)
    }

    /// Merges the snapshot, its pending part and the logged updates into a new snapshot and
    /// deletes the merged rows, all in one transaction: a crash at any point leaves either the
    /// old snapshot with the full log or the new snapshot with the rest of the log.
    ///
    /// Every logged row is folded, even one whose dependency has not been logged yet (e.g. an
    /// edit built on one another node has not committed): what integrates goes into the
    /// snapshot, and what yrs holds back is kept beside it as the snapshot's pending part
    /// (see [`fold_log`]). So a dependency that never arrives cannot stop compaction, the log
    /// stays bounded by `compact_after`, and no compaction reads a row twice.
    ///
    /// Safe against a concurrent compaction of the same room (another node): the snapshot is
    /// only replaced if its marker is still the one this merge started from; otherwise this
    /// compaction rolls back and reports `false`.
    pub async fn compact(&self, room: &RoomId) -> Result<bool, StorageError> {
        let txn = self.db.begin().await?;
        // Write first: it takes the write lock (SQLite) or the row lock (PostgreSQL) before
        // anything is read, so two compactions of one room queue up instead of one failing
        // to upgrade a read transaction.
        room_snapshot::Entity::update_many()
            .col_expr(
                room_snapshot::Column::UpdatedAt,
                Expr::col(room_snapshot::Column::UpdatedAt),
            )
            .filter(room_snapshot::Column::RoomId.eq(room.as_str()))
            .exec(&txn)
            .await?;
        let snapshot = room_snapshot::Entity::find_by_id(room.as_str())
            .one(&txn)
            .await?;
        let after = snapshot.as_ref().map_or(0, |s| s.last_update_id);
        let rows = room_update::Entity::find()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .order_by_asc(room_update::Column::Id)
            .all(&txn)
            .await?;
        let Some(highest) = rows.last().map(|r| r.id) else {
            return Ok(false);
        };
        // Strictly increasing, so readers notice every compaction (see `load`), even one that
        // only merged rows which committed late under lower ids.
        let marker = highest.max(after + 1);
        let merged_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let base_was_missing = snapshot.is_none();
        let (base, base_pending) = match snapshot {
            Some(s) => (Some(s.data), s.pending),
            None => (None, None),
        };
        let updates: Vec<Vec<u8>> = rows.into_iter().map(|r| r.data).collect();
        let folded_rows = updates.len();
        let room_for_merge = room.clone();
        let folded = tokio::task::spawn_blocking(move || {
            fold_log(
                &room_for_merge,
                base.as_deref(),
                base_pending.as_deref(),
                &updates,
            )
        })
        .await??;
        if let Some(pending) = &folded.pending {
            tracing::debug!(room = %room, rows = folded_rows, pending_bytes = pending.len(), "compaction keeps updates waiting for a dependency beside the snapshot");
        }
        let now = now_millis();
        if base_was_missing {
            room_snapshot::Entity::insert(room_snapshot::ActiveModel {
                room_id: Set(room.as_str().to_owned()),
                data: Set(folded.snapshot),
                last_update_id: Set(marker),
                updated_at: Set(now),
                pending: Set(folded.pending),
            })
            .exec(&txn)
            .await?;
        } else {
            let result = room_snapshot::Entity::update_many()
                .col_expr(room_snapshot::Column::Data, Expr::value(folded.snapshot))
                .col_expr(room_snapshot::Column::Pending, Expr::value(folded.pending))
                .col_expr(room_snapshot::Column::LastUpdateId, Expr::value(marker))
                .col_expr(room_snapshot::Column::UpdatedAt, Expr::value(now))
                .filter(room_snapshot::Column::RoomId.eq(room.as_str()))
                .filter(room_snapshot::Column::LastUpdateId.eq(after))
                .exec(&txn)
                .await?;
            if result.rows_affected != 1 {
                txn.rollback().await?;
                return Ok(false);
            }
        }
        // Exactly the rows merged: one committed meanwhile under a lower id stays in the log.
        for ids in merged_ids.chunks(1000) {
            room_update::Entity::delete_many()
                .filter(room_update::Column::RoomId.eq(room.as_str()))
                .filter(room_update::Column::Id.is_in(ids.iter().copied()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(true)
    }

    /// Deletes everything stored for a room (log, snapshot, versions) in one transaction.
    pub async fn delete_room(&self, room: &RoomId) -> Result<(), StorageError> {
        let txn = self.db.begin().await?;
        Self::delete_room_in(&txn, room).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Deletes everything stored for a room (log, snapshot, versions) through `db`: a
    /// transaction of the caller's that deletes the room's other rows too, so the room goes
    /// whole or not at all.
    pub async fn delete_room_in(
        db: &impl sea_orm::ConnectionTrait,
        room: &RoomId,
    ) -> Result<(), StorageError> {
        room_update::Entity::delete_many()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .exec(db)
            .await?;
        room_snapshot::Entity::delete_many()
            .filter(room_snapshot::Column::RoomId.eq(room.as_str()))
            .exec(db)
            .await?;
        room_version::Entity::delete_many()
            .filter(room_version::Column::RoomId.eq(room.as_str()))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Stores a version of a room. `captured_at_ms` (milliseconds since the Unix epoch) is
    /// when `data` was read from the document; it is recorded as the version's creation time,
    /// which automatic versions compare edits against.
    pub async fn insert_version(
        &self,
        room: &RoomId,
        kind: VersionKind,
        label: Option<String>,
        data: Vec<u8>,
        captured_at_ms: i64,
    ) -> Result<VersionInfo, StorageError> {
        let created_at = captured_at_ms;
        let size = data.len();
        let inserted = room_version::Entity::insert(room_version::ActiveModel {
            room_id: Set(room.as_str().to_owned()),
            kind: Set(kind.as_str().to_owned()),
            label: Set(label.clone()),
            data: Set(data),
            created_at: Set(created_at),
            ..Default::default()
        })
        .exec(&self.db)
        .await?;
        Ok(VersionInfo {
            id: inserted.last_insert_id,
            kind,
            label,
            created_at_ms: created_at,
            size_bytes: size,
        })
    }

    /// When the room's newest version was taken (ms since the epoch), if it has any.
    pub async fn latest_version_at(&self, room: &RoomId) -> Result<Option<i64>, StorageError> {
        Ok(room_version::Entity::find()
            .select_only()
            .column(room_version::Column::CreatedAt)
            .filter(room_version::Column::RoomId.eq(room.as_str()))
            .order_by_desc(room_version::Column::Id)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?)
    }

    /// Versions of a room, newest first.
    pub async fn list_versions(&self, room: &RoomId) -> Result<Vec<VersionInfo>, StorageError> {
        let rows: Vec<(i64, String, Option<String>, i64, i64)> = room_version::Entity::find()
            .select_only()
            .column(room_version::Column::Id)
            .column(room_version::Column::Kind)
            .column(room_version::Column::Label)
            .column(room_version::Column::CreatedAt)
            // LENGTH works on SQLite blobs and PostgreSQL bytea alike; the data stays put.
            .column_as(Expr::cust("CAST(LENGTH(data) AS BIGINT)"), "size")
            .filter(room_version::Column::RoomId.eq(room.as_str()))
            .order_by_desc(room_version::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, label, created_at, size)| VersionInfo {
                id,
                kind: VersionKind::parse(&kind),
                label,
                created_at_ms: created_at,
                size_bytes: usize::try_from(size).unwrap_or(0),
            })
            .collect())
    }

    /// One version with its data, if it belongs to `room`.
    pub async fn get_version(
        &self,
        room: &RoomId,
        id: i64,
    ) -> Result<Option<(VersionInfo, Vec<u8>)>, StorageError> {
        let row = room_version::Entity::find_by_id(id)
            .filter(room_version::Column::RoomId.eq(room.as_str()))
            .one(&self.db)
            .await?;
        Ok(row.map(|r| {
            (
                VersionInfo {
                    id: r.id,
                    kind: VersionKind::parse(&r.kind),
                    label: r.label,
                    created_at_ms: r.created_at,
                    size_bytes: r.data.len(),
                },
                r.data,
            )
        }))
    }
}

/// The result of folding a log: what the document shows, and what waits for a dependency.
struct Folded {
    /// Everything that integrated, as one v1 update (see [`crate::document::encode_integrated`]).
    snapshot: Vec<u8>,
    /// The rows holding something yrs keeps back until its dependency arrives, verbatim and
    /// in log order ([`encode_waiting`]); `None` when nothing waits.
    pending: Option<Vec<u8>>,
}

/// Merges `snapshot`, the rows waiting beside it (`pending`) and `updates` into a new
/// snapshot and the rows still waiting.
///
/// The waiting rows are kept as they were logged, not re-encoded: yrs integrates a waiting
/// struct only when what it lacks arrives, and a re-encoding of its pending structs does not
/// always integrate into the same text later. A row waits when any struct it inserts or any
/// deletion it carries is among what yrs holds back; every other row is in the snapshot, and
/// what a waiting row already integrated is there too (applying it again changes nothing).
fn fold_log(
    room: &RoomId,
    snapshot: Option<&[u8]>,
    pending: Option<&[u8]>,
    updates: &[Vec<u8>],
) -> Result<Folded, StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        room: room.clone(),
        detail,
    };
    let mut rows = match pending {
        Some(pending) => decode_waiting(pending).map_err(|e| corrupt(e.to_string()))?,
        None => Vec::new(),
    };
    rows.extend(updates.iter().cloned());
    let doc = rebuild_doc(room, snapshot, rows.iter().map(Vec::as_slice))?;
    let snapshot = crate::document::encode_integrated(&doc);
    let held_back = {
        let txn = doc.transact();
        let store = txn.store();
        let mut held_back = store
            .pending_update()
            .map(|p| p.update.insertions(true))
            .unwrap_or_default();
        if let Some(deletions) = store.pending_ds() {
            held_back.merge_with(deletions.clone());
        }
        held_back
    };
    if held_back.is_empty() {
        return Ok(Folded {
            snapshot,
            pending: None,
        });
    }
    let mut waiting = Vec::new();
    for row in rows {
        let update = Update::decode_v1(&row).map_err(|e| corrupt(e.to_string()))?;
        let touched = update.insertions(true).merge(update.delete_set());
        if !touched.intersect(&held_back).is_empty() {
            waiting.push(row);
        }
    }
    Ok(Folded {
        snapshot,
        pending: Some(encode_waiting(&waiting)),
    })
}

/// The waiting rows as one value: their count, then each as a length-prefixed byte string
/// (lib0 encoding, as in Yjs messages).
fn encode_waiting(rows: &[Vec<u8>]) -> Vec<u8> {
    use yrs::encoding::write::Write;
    let mut out = Vec::new();
    out.write_var(rows.len());
    for row in rows {
        out.write_buf(row);
    }
    out
}

/// Reads what [`encode_waiting`] wrote; every length is checked against what remains.
fn decode_waiting(bytes: &[u8]) -> Result<Vec<Vec<u8>>, yrs::encoding::read::Error> {
    use yrs::encoding::read::{Cursor, Read};
    let mut cursor = Cursor::new(bytes);
    let count: usize = cursor.read_var()?;
    // Each row takes at least its length byte: a count beyond that is a lie.
    let mut rows = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        rows.push(cursor.read_buf()?.to_vec());
    }
    Ok(rows)
}

fn apply_stored(
    room: &RoomId,
    txn: &mut yrs::TransactionMut<'_>,
    bytes: &[u8],
) -> Result<(), StorageError> {
    let corrupt = |detail: String| StorageError::Corrupt {
        room: room.clone(),
        detail,
    };
    // yrs decodes values recursively: bytes nested past the guard are refused unread, as a
    // document too deep to open rather than a corrupt one.
    use crate::document::{STORED_DEPTH_GUARD, StoredDocumentError, inspect_stored};
    inspect_stored(bytes, STORED_DEPTH_GUARD).map_err(|e| match e {
        StoredDocumentError::TooDeep(cause) => StorageError::TooDeep {
            room: room.clone(),
            cause,
        },
        StoredDocumentError::Corrupt(detail) => corrupt(detail),
    })?;
    let update = Update::decode_v1(bytes).map_err(|e| corrupt(e.to_string()))?;
    txn.apply_update(update).map_err(|e| corrupt(e.to_string()))
}

/// Builds a document from stored bytes: the snapshot, then `rest` in order. Any byte that
/// does not decode or apply makes the whole load fail: a partial document must never be
/// served (and later saved over the real one).
pub(crate) fn rebuild_doc<'a>(
    room: &RoomId,
    snapshot: Option<&'a [u8]>,
    rest: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Doc, StorageError> {
    let doc = crate::document::new_doc();
    {
        let mut txn = doc.transact_mut();
        for bytes in snapshot.into_iter().chain(rest) {
            apply_stored(room, &mut txn, bytes)?;
        }
    }
    Ok(doc)
}
