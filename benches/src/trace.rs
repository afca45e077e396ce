//! Keystroke-level editing traces in the format of `josephg/editing-traces`
//! (`{startContent, endContent, txns: [{time, patches: [[pos, delete_count, insert]]}]}`),
//! gzipped JSON as published.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;
use yrs::{Doc, GetString, Text, Transact};

/// The `data/` directory of this crate, where the traces and their licence note live.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A whole trace.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EditingTrace {
    /// The document before the first transaction.
    pub start_content: String,
    /// The document after the last transaction.
    pub end_content: String,
    /// The edits, in the order they were made.
    #[serde(rename = "txns")]
    pub transactions: Vec<TraceTransaction>,
}

/// One transaction: the patches one keystroke (or paste) made.
#[derive(Debug, Deserialize)]
pub struct TraceTransaction {
    /// Applied in order, each against the text the previous one left.
    pub patches: Vec<Patch>,
}

/// `[position, delete_count, insert]`: delete `delete_count` characters at `position`, then
/// insert `insert` there.
#[derive(Debug, Deserialize)]
#[serde(from = "(u32, u32, String)")]
pub struct Patch {
    /// Where the patch applies, in characters.
    pub position: u32,
    /// How many characters are removed first.
    pub delete_count: u32,
    /// The text inserted after the removal (often empty).
    pub insert: String,
}

impl From<(u32, u32, String)> for Patch {
    fn from((position, delete_count, insert): (u32, u32, String)) -> Self {
        Self {
            position,
            delete_count,
            insert,
        }
    }
}

impl EditingTrace {
    /// Reads a gzipped JSON trace.
    pub fn load(path: &Path) -> io::Result<Self> {
        let reader = BufReader::new(GzDecoder::new(File::open(path)?));
        Ok(serde_json::from_reader(reader)?)
    }

    /// The number of transactions, including the one [`replay`](Self::replay) adds for a
    /// non-empty `start_content`: one update each.
    pub fn update_count(&self) -> usize {
        self.transactions.len() + usize::from(!self.start_content.is_empty())
    }

    /// Replays the trace into the root text `root` of `doc`, one `yrs` transaction per trace
    /// transaction, and returns each transaction's v1 update: what a client would send.
    ///
    /// Trace positions count Unicode scalar values while Tandem's documents count UTF-16
    /// units; the two agree on the traces shipped in `data/`, which are ASCII. A document
    /// created with byte offsets would agree as well, for the same reason.
    pub fn replay(&self, doc: &Doc, root: &str) -> Vec<Vec<u8>> {
        let text = doc.get_or_insert_text(root);
        let mut updates = Vec::with_capacity(self.update_count());
        if !self.start_content.is_empty() {
            let mut txn = doc.transact_mut();
            text.insert(&mut txn, 0, &self.start_content);
            updates.push(txn.encode_update_v1());
        }
        for transaction in &self.transactions {
            let mut txn = doc.transact_mut();
            for patch in &transaction.patches {
                if patch.delete_count > 0 {
                    text.remove_range(&mut txn, patch.position, patch.delete_count);
                }
                if !patch.insert.is_empty() {
                    text.insert(&mut txn, patch.position, &patch.insert);
                }
            }
            updates.push(txn.encode_update_v1());
        }
        updates
    }
}

/// The text of root `root` in `doc`.
pub fn text_of(doc: &Doc, root: &str) -> String {
    doc.get_or_insert_text(root).get_string(&doc.transact())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_replay_in_order() {
        let json = r#"{"startContent":"ab","endContent":"xb!","txns":[
            {"time":"t","patches":[[0,1,"x"]]},
            {"time":"t","patches":[[2,0,"!"]]}]}"#;
        let trace: EditingTrace = serde_json::from_str(json).unwrap();
        let doc = Doc::new();
        let updates = trace.replay(&doc, "text");
        assert_eq!(updates.len(), trace.update_count());
        assert_eq!(text_of(&doc, "text"), trace.end_content);
    }
}
