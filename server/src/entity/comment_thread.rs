//! A comment thread anchored to a range of a file.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "comment_threads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub room_id: String,
    pub file: String,
    /// Encoded Yjs relative position of the range's start.
    pub anchor_start: Vec<u8>,
    /// Encoded Yjs relative position of the range's end.
    pub anchor_end: Vec<u8>,
    /// The text the range covered when the thread was opened.
    pub quote: String,
    /// `open` or `resolved`.
    pub status: String,
    pub author_id: String,
    pub resolved_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
