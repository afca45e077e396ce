//! What a socket may write in its room's document, from its role and identity: the grant the
//! store checks every update against (`crdt_store::writes`).

use std::sync::Arc;

use crdt_store::writes::WriteGrant;

use crate::accounts::{Identity, Role};

/// The grant of a socket with `role` speaking as `identity`. The assistant's suggestions are
/// stamped with its name like anyone's; its decisions are the server's gate's, so it alone
/// writes the fields the server owns.
pub fn write_grant(role: Role, identity: &Identity) -> WriteGrant {
    let author: Arc<str> = match &identity.user_id {
        Some(user) => format!("user:{user}").into(),
        None => format!("guest:{}", identity.name).into(),
    };
    WriteGrant {
        content: role >= Role::Editor,
        suggest: role >= Role::Suggester,
        decide: identity.user_id.as_deref() == Some(crate::accounts::ASSISTANT_USER_ID),
        author,
        author_name: identity.name.as_str().into(),
    }
}
