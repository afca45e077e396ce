//! The compacted state of a room: the log rows merged so far, as one update. Merged rows are
//! deleted from the log in the same transaction, so every row left is unmerged.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_snapshots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub room_id: String,
    /// What the merged updates show: everything that integrated, as one v1 update.
    pub data: Vec<u8>,
    /// The highest row id merged so far, and at least one more at every compaction: a
    /// reader that sees it unchanged across its reads saw no compaction in between.
    pub last_update_id: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The merged rows still waiting for a dependency, verbatim (a count, then each row
    /// length-prefixed, lib0 encoding): applied after `data` and before the log.
    pub pending: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
