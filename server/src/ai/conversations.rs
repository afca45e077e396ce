//! The assistant's conversations and messages as stored, and the usage they add up to.

use std::collections::BTreeMap;

use crdt_store::RoomId;
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, TransactionTrait,
};
use serde_json::json;

use super::Action;
use super::provider::Completion;
use crate::accounts::random_id;
use crate::entity::{ai_conversation, ai_message};
use crate::http::{ApiError, RoomScope};

/// Who wrote a message, as stored in its `role`.
const QUESTION: &str = "user";
/// An answer's `role`.
const ANSWER: &str = "assistant";

/// The conversation a question belongs to.
pub(crate) enum Conversation {
    /// One of the room's, checked to exist.
    Existing(String),
    /// One to start, once the question is accepted.
    New {
        /// Its title: the start of the first question.
        title: String,
    },
}

/// Conversation `id` of the room; 404 when it has none such.
pub(crate) async fn conversation(
    db: &DatabaseConnection,
    room: &RoomId,
    id: &str,
) -> Result<ai_conversation::Model, ApiError> {
    ai_conversation::Entity::find_by_id(id)
        .filter(ai_conversation::Column::RoomId.eq(room.as_str()))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation in this room"))
}

/// The room's conversations, newest first.
pub(crate) async fn conversations(
    db: &DatabaseConnection,
    room: &RoomId,
) -> Result<Vec<ai_conversation::Model>, ApiError> {
    Ok(ai_conversation::Entity::find()
        .filter(ai_conversation::Column::RoomId.eq(room.as_str()))
        .order_by_desc(ai_conversation::Column::CreatedAt)
        .all(db)
        .await?)
}

/// A conversation's messages, oldest first.
pub(crate) async fn messages(
    db: &DatabaseConnection,
    conversation: &str,
) -> Result<Vec<ai_message::Model>, ApiError> {
    Ok(ai_message::Entity::find()
        .filter(ai_message::Column::ConversationId.eq(conversation))
        .order_by_asc(ai_message::Column::Id)
        .all(db)
        .await?)
}

/// The last question of conversation `id` of the room (404 when there is no such
/// conversation, or nothing to ask again), with its action.
pub(crate) async fn last_question(
    db: &DatabaseConnection,
    room: &RoomId,
    id: &str,
) -> Result<(String, Action), ApiError> {
    conversation(db, room, id).await?;
    let last = messages(db, id)
        .await?
        .into_iter()
        .rev()
        .find(|m| m.role == QUESTION)
        .ok_or_else(|| ApiError::not_found("nothing to regenerate"))?;
    let action = serde_json::from_value(json!(last.action)).unwrap_or(Action::Free);
    Ok((last.content, action))
}

/// Stores a question of `user_id` in room `room`, in a new conversation or an existing one,
/// in one transaction (never a conversation without its first question); answers the
/// conversation's id.
pub(crate) async fn store_question(
    db: &DatabaseConnection,
    room: &RoomId,
    user_id: &str,
    conversation: &Conversation,
    message: &str,
    action: Action,
    now: i64,
) -> Result<String, ApiError> {
    let txn = db.begin().await?;
    let conversation_id = match conversation {
        Conversation::Existing(id) => id.clone(),
        Conversation::New { title } => {
            let id = random_id();
            ai_conversation::ActiveModel {
                id: Set(id.clone()),
                room_id: Set(room.as_str().to_owned()),
                user_id: Set(user_id.to_owned()),
                title: Set(title.clone()),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
            id
        }
    };
    ai_message::ActiveModel {
        conversation_id: Set(conversation_id.clone()),
        user_id: Set(user_id.to_owned()),
        role: Set(QUESTION.into()),
        action: Set(action.as_str().into()),
        content: Set(message.to_owned()),
        prompt_tokens: Set(0),
        completion_tokens: Set(0),
        suggestion_ids: Set("[]".into()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(conversation_id)
}

/// Stores the answer to a question of `user_id` with its token usage and the suggestions it
/// made; answers the message's id (none if it could not be stored).
pub(crate) async fn store_answer(
    db: &DatabaseConnection,
    conversation_id: &str,
    user_id: &str,
    action: Action,
    completion: &Completion,
    suggestion_ids: &[String],
    now: i64,
) -> Option<i64> {
    ai_message::ActiveModel {
        conversation_id: Set(conversation_id.to_owned()),
        user_id: Set(user_id.to_owned()),
        role: Set(ANSWER.into()),
        action: Set(action.as_str().into()),
        content: Set(completion.text.clone()),
        prompt_tokens: Set(i64::from(completion.prompt_tokens)),
        completion_tokens: Set(i64::from(completion.completion_tokens)),
        suggestion_ids: Set(serde_json::to_string(suggestion_ids).unwrap_or_default()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
    .map(|m| m.id)
    .ok()
}

/// The AI usage of `user_id` in the rooms of `scope`, totals per day (UTC), oldest first.
pub(crate) async fn usage_per_day(
    db: &DatabaseConnection,
    user_id: &str,
    scope: &RoomScope,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut select = ai_message::Entity::find().filter(ai_message::Column::UserId.eq(user_id));
    if *scope != RoomScope::Every {
        // Messages carry no room; their conversation does.
        let in_scope = Query::select()
            .column(ai_conversation::Column::Id)
            .from(ai_conversation::Entity)
            .cond_where(scope.condition(ai_conversation::Column::RoomId))
            .to_owned();
        select = select.filter(ai_message::Column::ConversationId.in_subquery(in_scope));
    }
    let rows = select.all(db).await?;
    let mut days: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for m in rows {
        let day = m.created_at.div_euclid(86_400_000);
        let entry = days.entry(day).or_default();
        if m.role == QUESTION {
            entry.2 += 1;
        }
        entry.0 += m.prompt_tokens;
        entry.1 += m.completion_tokens;
    }
    Ok(days
        .into_iter()
        .map(|(day, (prompt, completion, requests))| {
            json!({
                "day_start_ms": day * 86_400_000,
                "requests": requests,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            })
        })
        .collect())
}
