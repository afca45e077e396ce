//! One message of a conversation, with its token usage.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ai_messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub conversation_id: String,
    pub user_id: String,
    pub role: String,
    pub action: String,
    pub content: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub suggestion_ids: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
