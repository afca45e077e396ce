//! What a principal may do in a room, and how changes reach open sockets.
//!
//! Access is decided from the database on every REST request and at every WebSocket
//! upgrade. Open sockets cache their role; whenever something that could change it happens
//! (a role change, a removal, a revoked session, key or link, a deleted room) the change is
//! announced on [`AccessEvents`] and every affected socket re-checks at once.
//!
//! Events are a fast path, not the only one: each socket also closes itself when its
//! credential expires, re-checks every `--access-recheck-interval`, and re-checks (spread
//! over `--access-recheck-spread`) on [`AccessEvent::RecheckAll`], which stands for events
//! that may have been missed (a Redis reconnect, an overflowing queue). At most
//! [`RECHECKS_AT_ONCE`] re-checks run at a time on a node, so a re-check of every socket
//! cannot take the database's whole connection pool.

use crdt_store::RoomId;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};

pub use crate::accounts::access_events::{
    AccessEvent, AccessEvents, AccessForwarder, RECHECKS_AT_ONCE,
};
use crate::accounts::auth::{Principal, Role};
use crate::entity::{api_key, room, room_member, share_link, user};

/// Who someone is in a room, for presence stamping and listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The account, if any (share-link guests have none).
    pub user_id: Option<String>,
    /// The name shown to others.
    pub name: String,
}

/// A principal's standing in a room.
#[derive(Clone, Debug)]
pub enum RoomAccess {
    /// No such room.
    NoRoom,
    /// The room exists but the principal has no part in it.
    Denied,
    /// The principal may act with `role`.
    Granted {
        /// What they may do.
        role: Role,
        /// Who they are.
        identity: Identity,
    },
}

/// Resolves a principal's access to `room_id`.
pub async fn room_access(
    db: &DatabaseConnection,
    principal: &Principal,
    room_id: &RoomId,
) -> Result<RoomAccess, DbErr> {
    let room_id = room_id.as_str();
    if room::Entity::find_by_id(room_id).one(db).await?.is_none() {
        return Ok(RoomAccess::NoRoom);
    }
    let member_role = |user_id: String| async move {
        let membership = room_member::Entity::find_by_id((room_id.to_owned(), user_id.clone()))
            .one(db)
            .await?;
        let account = user::Entity::find_by_id(&user_id).one(db).await?;
        Ok::<_, DbErr>(match (membership, account) {
            (Some(m), Some(u)) => Role::parse(&m.role).map(|role| (role, u.display_name)),
            _ => None,
        })
    };
    Ok(match principal {
        Principal::User { user_id, .. } => match member_role(user_id.clone()).await? {
            Some((role, name)) => RoomAccess::Granted {
                role,
                identity: Identity {
                    user_id: Some(user_id.clone()),
                    name,
                },
            },
            None => RoomAccess::Denied,
        },
        Principal::ApiKey {
            key_id,
            user_id,
            role,
            rooms,
        } => {
            if !rooms.iter().any(|r| r == room_id) {
                return Ok(RoomAccess::Denied);
            }
            let key_name = api_key::Entity::find_by_id(key_id)
                .one(db)
                .await?
                .map(|k| k.name)
                .unwrap_or_default();
            match member_role(user_id.clone()).await? {
                // A key never exceeds the rights of the user who made it.
                Some((owner_role, _)) => RoomAccess::Granted {
                    role: (*role).min(owner_role),
                    identity: Identity {
                        user_id: Some(user_id.clone()),
                        name: key_name,
                    },
                },
                None => RoomAccess::Denied,
            }
        }
        Principal::Share {
            room_id: shared,
            link_id,
        } => {
            let live = share_link::Entity::find_by_id(link_id)
                .filter(share_link::Column::RevokedAt.is_null())
                .one(db)
                .await?
                .is_some();
            if live && shared == room_id {
                RoomAccess::Granted {
                    role: Role::Viewer,
                    identity: Identity {
                        user_id: None,
                        name: "Guest".to_owned(),
                    },
                }
            } else {
                RoomAccess::Denied
            }
        }
    })
}

impl AccessEvent {
    /// Whether a socket of `principal` in `room_id` must re-check its access.
    pub fn concerns(&self, principal: &Principal, room_id: &str) -> bool {
        match (self, principal) {
            (AccessEvent::MembersChanged { room_id: r }, _)
            | (AccessEvent::RoomDeleted { room_id: r }, _) => r == room_id,
            (AccessEvent::SessionsRevoked { user_id }, Principal::User { user_id: u, .. }) => {
                user_id == u
            }
            (AccessEvent::ApiKeyRevoked { key_id }, Principal::ApiKey { key_id: k, .. }) => {
                key_id == k
            }
            (AccessEvent::ShareLinkRevoked { link_id }, Principal::Share { link_id: l, .. }) => {
                link_id == l
            }
            (AccessEvent::RecheckAll, _) => true,
            _ => false,
        }
    }
}
