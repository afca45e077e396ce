//! One row per persisted Yjs update: the append-only log of a room since its last snapshot.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "room_updates")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub room_id: String,
    pub data: Vec<u8>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
