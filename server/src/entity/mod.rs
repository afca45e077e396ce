//! sea-orm entities for the tables the server owns (accounts, access, AI conversations, collaboration, webhooks).

pub mod activity;
pub mod ai_conversation;
pub mod ai_message;
pub mod api_key;
pub mod comment;
pub mod comment_thread;
pub mod invite;
pub mod login_throttle;
pub mod notification;
pub mod room;
pub mod room_member;
pub mod rotated_refresh_token;
pub mod server_setting;
pub mod session;
pub mod share_link;
pub mod user;
pub mod webhook;
pub mod webhook_delivery;
