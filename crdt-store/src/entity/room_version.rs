//! A saved state of a room's document: automatic, named, or made by a restore.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub room_id: String,
    /// `auto`, `named` or `restore` (see `VersionKind`).
    pub kind: String,
    pub label: Option<String>,
    /// The full document state as one v1 Yjs update.
    pub data: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
