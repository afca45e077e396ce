//! The database side of a room: the update log, the snapshot, versions.
//!
//! Everything here is plain SQL through sea-orm and works the same on SQLite and PostgreSQL.
//! Document bytes are opaque to this module except in [`Storage::compact`], which merges
//! them with `yrs` off the async threads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::Expr;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectOptions, Database, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
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
}

/// What is stored for one room, in the order it must be applied.
pub struct StoredRoom {
    /// The compacted snapshot, if the room was ever compacted.
    pub snapshot: Option<Vec<u8>>,
    /// Updates logged after the snapshot, oldest first.
    pub updates: Vec<Vec<u8>>,
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

/// Milliseconds since the Unix epoch, as stored in `created_at` columns.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Storage {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and applies pending migrations.
    ///
    /// `synchronous_full` makes SQLite sync its write-ahead log on every commit (what the
    /// durable mode promises across power loss); PostgreSQL follows its own `fsync` setting.
    pub async fn connect(url: &str, synchronous_full: bool) -> Result<Self, StorageError> {
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
        let db = Database::connect(options).await?;
        Migrator::up(&db, None).await?;
        Ok(Self { db })
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StorageError> {
        Ok(self.db.ping().await?)
    }

    /// Reads a room's snapshot and the log after it, consistently even while another node
    /// compacts the same room: compaction moves `last_update_id` forward in the same
    /// transaction that deletes the merged rows, so if the snapshot's marker is unchanged after
    /// reading the log, no rows were deleted between the two reads.
    pub async fn load(&self, room: &RoomId) -> Result<StoredRoom, StorageError> {
        loop {
            let snapshot = room_snapshot::Entity::find_by_id(room.as_str())
                .one(&self.db)
                .await?;
            let after = snapshot.as_ref().map_or(0, |s| s.last_update_id);
            let updates = room_update::Entity::find()
                .filter(room_update::Column::RoomId.eq(room.as_str()))
                .filter(room_update::Column::Id.gt(after))
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
                return Ok(StoredRoom {
                    snapshot: snapshot.map(|s| s.data),
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

    /// Number of log rows after the snapshot.
    pub async fn log_len(&self, room: &RoomId) -> Result<u64, StorageError> {
        let after = room_snapshot::Entity::find_by_id(room.as_str())
            .select_only()
            .column(room_snapshot::Column::LastUpdateId)
            .into_tuple::<i64>()
            .one(&self.db)
            .await?
            .unwrap_or(0);
        Ok(room_update::Entity::find()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .filter(room_update::Column::Id.gt(after))
            .count(&self.db)
            .await?)
    }

    /// Merges the snapshot and the logged updates into a new snapshot and deletes the merged
    /// rows, all in one transaction: a crash at any point leaves either the old snapshot with
    /// the full log or the new snapshot with the rest of the log. The merge stops before an
    /// update that cannot be integrated yet (see [`fold_complete_prefix`]); it and the rows
    /// after it stay in the log.
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
            .filter(room_update::Column::Id.gt(after))
            .order_by_asc(room_update::Column::Id)
            .all(&txn)
            .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let base_was_missing = snapshot.is_none();
        let base = snapshot.map(|s| s.data);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let updates: Vec<Vec<u8>> = rows.into_iter().map(|r| r.data).collect();
        let room_for_merge = room.clone();
        let folded = tokio::task::spawn_blocking(move || {
            fold_complete_prefix(&room_for_merge, base.as_deref(), &updates)
        })
        .await??;
        let Some((merged, count)) = folded else {
            tracing::debug!(room = %room, rows = ids.len(), "compaction waits: the log's first update depends on one not logged yet");
            return Ok(false);
        };
        if count < ids.len() {
            tracing::debug!(room = %room, folded = count, rows = ids.len(), "compaction stops before an update whose dependency is not logged yet");
        }
        let last_id = ids[count - 1];
        let now = now_millis();
        if base_was_missing {
            room_snapshot::Entity::insert(room_snapshot::ActiveModel {
                room_id: Set(room.as_str().to_owned()),
                data: Set(merged),
                last_update_id: Set(last_id),
                updated_at: Set(now),
            })
            .exec(&txn)
            .await?;
        } else {
            let result = room_snapshot::Entity::update_many()
                .col_expr(room_snapshot::Column::Data, Expr::value(merged))
                .col_expr(room_snapshot::Column::LastUpdateId, Expr::value(last_id))
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
        room_update::Entity::delete_many()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .filter(room_update::Column::Id.lte(last_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Deletes everything stored for a room (log, snapshot, versions) in one transaction.
    pub async fn delete_room(&self, room: &RoomId) -> Result<(), StorageError> {
        let txn = self.db.begin().await?;
        room_update::Entity::delete_many()
            .filter(room_update::Column::RoomId.eq(room.as_str()))
            .exec(&txn)
            .await?;
        room_snapshot::Entity::delete_many()
            .filter(room_snapshot::Column::RoomId.eq(room.as_str()))
            .exec(&txn)
            .await?;
        room_version::Entity::delete_many()
            .filter(room_version::Column::RoomId.eq(room.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The underlying connection pool, for tables other parts of the server own.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
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

/// Builds a document from stored bytes. Any byte that does not decode or apply makes the
/// whole load fail: a partial document must never be served (and later saved over the real
/// one).
/// Merges `snapshot` and the longest prefix of `updates` after which nothing is left pending
/// (an update whose dependencies are not logged yet, e.g. one built on an edit another node
/// has not committed yet) into one v1 update; answers it with the prefix's length, or `None`
/// when not even the first update completes.
///
/// A snapshot never carries pending structs (see [`crate::room::encode_integrated`]): their
/// rows stay in the log until their dependencies arrive.
fn fold_complete_prefix(
    room: &RoomId,
    snapshot: Option<&[u8]>,
    updates: &[Vec<u8>],
) -> Result<Option<(Vec<u8>, usize)>, StorageError> {
    let doc = crate::room::new_doc();
    let mut complete = 0;
    {
        let mut txn = doc.transact_mut();
        if let Some(snapshot) = snapshot {
            apply_stored(room, &mut txn, snapshot)?;
        }
        for (i, bytes) in updates.iter().enumerate() {
            apply_stored(room, &mut txn, bytes)?;
            if !txn.has_missing_updates() {
                complete = i + 1;
            }
        }
    }
    let doc = match complete {
        0 => return Ok(None),
        n if n == updates.len() => doc,
        n => rebuild_doc(room, snapshot, &updates[..n])?,
    };
    Ok(Some((crate::room::encode_integrated(&doc), complete)))
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
    // yrs decodes values recursively: bytes nested past the guard are refused unread.
    let guard = protocol::UpdateLimits {
        max_depth: crate::document::STORED_DEPTH_GUARD,
    };
    protocol::update::inspect(bytes, &guard).map_err(|e| corrupt(e.to_string()))?;
    let update = Update::decode_v1(bytes).map_err(|e| corrupt(e.to_string()))?;
    txn.apply_update(update).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn rebuild_doc(
    room: &RoomId,
    snapshot: Option<&[u8]>,
    updates: &[Vec<u8>],
) -> Result<Doc, StorageError> {
    let doc = crate::room::new_doc();
    {
        let mut txn = doc.transact_mut();
        for bytes in snapshot
            .into_iter()
            .chain(updates.iter().map(Vec::as_slice))
        {
            apply_stored(room, &mut txn, bytes)?;
        }
    }
    Ok(doc)
}
