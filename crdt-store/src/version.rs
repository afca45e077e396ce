//! Versions: saved states of a room's document.

use serde::Serialize;

/// Why a version exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionKind {
    /// Taken automatically after a period of activity or when an idle room is evicted.
    Auto,
    /// A checkpoint someone asked for, with a label.
    Named,
    /// The state right after a restore.
    Restore,
}

impl VersionKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionKind::Auto => "auto",
            VersionKind::Named => "named",
            VersionKind::Restore => "restore",
        }
    }

    /// Reads the stored spelling; unknown values (from a newer server) read as `Auto`.
    pub fn parse(stored: &str) -> Self {
        match stored {
            "named" => VersionKind::Named,
            "restore" => VersionKind::Restore,
            _ => VersionKind::Auto,
        }
    }
}

/// A version without its data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// Unique across all rooms; increasing in creation order.
    pub id: i64,
    /// Why it exists.
    pub kind: VersionKind,
    /// The checkpoint's label, or a description for automatic and restore versions.
    pub label: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Size of the stored state in bytes.
    pub size_bytes: usize,
}
