//! Client updates checked before `yrs` integrates them.
//!
//! `yrs` decodes nested values recursively and reserves room for the counts an update claims;
//! a client's bytes are walked first by [`protocol::update::inspect`], and the shared types
//! an update creates are measured against the document it lands in, under the same lock it
//! is applied with. Every update a client sends goes through [`apply_client_update`]; the
//! fuzz targets call it too.

use protocol::UpdateLimits;
use protocol::update::{ExistingItem, ItemId};
use yrs::updates::decoder::Decode;
use yrs::{
    Assoc, BranchID, ClientID, IdSet, IndexScope, ReadTxn, StateVector, StickyIndex,
    TransactionMut, Update,
};

/// Validates a client's v1 update and applies it in `txn`. Answers `false` for an update
/// that holds nothing (applied or not, nothing changes); an update refused here leaves the
/// document untouched. One refusal comes from `yrs` midway, [`ApplyError::Rejected`]: an
/// item that was waiting for its parent, and the parent arrived as something no item can
/// live in. What `yrs` integrated before it stays, so the caller discards the document.
pub fn apply_client_update(
    txn: &mut TransactionMut<'_>,
    update: &[u8],
    limits: &UpdateLimits,
) -> Result<bool, ApplyError> {
    let applied = apply_client_update_with(txn, update, limits, |txn, _| {
        txn.apply_update(Update::decode_v1(update)?)?;
        Ok(false)
    })?;
    Ok(applied.is_some())
}

/// Like [`apply_client_update`], with `apply` doing the applying once every check passed (it
/// may check more first, e.g. where the update writes, and answer `Err` without applying).
/// Answers `None` for an update that holds nothing, otherwise what `apply` answered.
pub(crate) fn apply_client_update_with<T>(
    txn: &mut TransactionMut<'_>,
    update: &[u8],
    limits: &UpdateLimits,
    apply: impl FnOnce(&mut TransactionMut<'_>, &protocol::UpdateOutline) -> Result<T, ApplyError>,
) -> Result<Option<T>, ApplyError> {
    let outline = protocol::update::inspect(update, limits)?;
    if outline.is_empty() {
        return Ok(None);
    }
    check_placement(txn, &outline, limits)?;
    apply(txn, &outline).map(Some)
}

/// The checks that need the document: nesting of the types the update creates, and parents
/// named by id.
fn check_placement(
    txn: &TransactionMut<'_>,
    outline: &protocol::UpdateOutline,
    limits: &UpdateLimits,
) -> Result<(), ApplyError> {
    let has = |known: &StateVector, id: ItemId| known.get(&ClientID::new(id.client)) > id.clock;
    if outline.creates_types() || outline.names_parents() {
        let known = txn.state_vector();
        if outline.creates_types() {
            outline.check_nesting(limits.max_depth, |id| {
                enclosing_types(&*txn, &known, id, limits.max_depth)
            })?;
        }
        if outline.names_parents() {
            // Deleted items are looked up in one snapshot, taken only if a parent is neither
            // a type nor missing (a child arriving for a map someone deleted meanwhile).
            let mut deleted: Option<IdSet> = None;
            outline.check_parents(
                |id| has(&known, id),
                |id| {
                    let id = yrs::ID::new(ClientID::new(id.client), id.clock);
                    if BranchID::get_nested(&*txn, &id).is_some()
                        || deleted
                            .get_or_insert_with(|| txn.snapshot().delete_set)
                            .contains(&id)
                    {
                        ExistingItem::CanParent
                    } else {
                        ExistingItem::CannotParent
                    }
                },
            )?;
        }
    }
    Ok(())
}

/// How many shared types enclose the item `id` in the document (an item of a root type: 0),
/// or `None` if the document does not have it. Climbs at most `cap + 1` levels: deeper is
/// refused whatever the exact depth.
fn enclosing_types<T: ReadTxn>(txn: &T, known: &StateVector, id: ItemId, cap: u32) -> Option<u32> {
    let mut current = yrs::ID::new(ClientID::new(id.client), id.clock);
    if known.get(&current.client) <= current.clock {
        return None;
    }
    let mut depth = 0;
    loop {
        // A sticky index at an item resolves to the type the item lives in.
        let Some(offset) =
            StickyIndex::new(IndexScope::Relative(current), Assoc::After).get_offset(txn)
        else {
            // Garbage-collected: nothing lives there any more, so nothing can nest in it.
            return Some(depth);
        };
        match offset.branch.id() {
            BranchID::Root(_) => return Some(depth),
            BranchID::Nested(parent) => {
                depth += 1;
                if depth > cap {
                    return Some(depth);
                }
                current = parent;
            }
        }
    }
}

/// Why an update was refused. The room is unchanged in every case but
/// [`ApplyError::Rejected`], after which the room is discarded and loads again from storage.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The update failed validation before `yrs` saw it: malformed, or nested too deep.
    #[error("refused update: {0}")]
    Refused(#[from] protocol::UpdateError),
    /// The bytes are not a v1 Yjs update.
    #[error("malformed update: {0}")]
    Malformed(#[from] yrs::encoding::read::Error),
    /// The update decoded but `yrs` refused it midway, having integrated part of it (see
    /// [`apply_client_update`]).
    #[error("update does not apply: {0}")]
    Rejected(#[from] yrs::error::UpdateError),
    /// The persistence writer has stopped (the server is shutting down).
    #[error("the store is shutting down")]
    ShuttingDown,
    /// The update writes where its connection may not (see [`crate::writes`]); nothing of
    /// it was applied.
    #[error("{0}")]
    Denied(#[from] crate::writes::WriteDenied),
    /// The room was deleted: nothing more is written to it.
    #[error("the room was deleted")]
    RoomDeleted,
    /// The database refused to store the update, for a reason retrying cannot fix (see
    /// [`crate::StorageError::is_permanent`]); nobody else received it.
    #[error("the update could not be stored: {0}")]
    NotPersisted(String),
}
