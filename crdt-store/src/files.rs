//! The files of a multi-file room: paths and the operations on them.
//!
//! By the document convention (see [`crate::document`]) a room's files are the `Y.Text`
//! entries of the root map [`FILES_ROOT`], plus any other root `Y.Text`. Every operation here
//! runs inside the caller's transaction and checks before it writes, so a refused operation
//! leaves the document untouched. Root texts can be rewritten but not renamed or deleted: a
//! Yjs document cannot drop or rename one of its roots.

use std::fmt;
use std::sync::Arc;

use yrs::{GetString, Map, Out, ReadTxn, TextPrelim, TextRef, TransactionMut, WriteTxn};

use crate::document::{self, FILES_ROOT, RootKind};

/// A file's path inside a room: `/`-separated segments, as in `src/main.rs`.
///
/// 1 to [`FilePath::MAX_LEN`] bytes; no empty, `.` or `..` segment (so no leading or trailing
/// `/` and nothing can point outside the room when exported or imported); no `\`, `:` or
/// control characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FilePath(Arc<str>);

/// Why a string is not a [`FilePath`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidFilePath {
    /// The path was empty.
    #[error("file path is empty")]
    Empty,
    /// The path was longer than [`FilePath::MAX_LEN`] bytes.
    #[error("file path is longer than {} bytes", FilePath::MAX_LEN)]
    TooLong,
    /// A segment was empty, `.` or `..` (the path starts or ends with `/`, or leaves its
    /// folder).
    #[error("file path {0:?} has an empty, '.' or '..' segment")]
    BadSegment(String),
    /// The path contained `\`, `:` or a control character.
    #[error("file path {0:?} contains '\\', ':' or a control character")]
    ForbiddenCharacter(String),
}

impl FilePath {
    /// Longest accepted path, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Parses a path.
    pub fn parse(path: &str) -> Result<Self, InvalidFilePath> {
        if path.is_empty() {
            return Err(InvalidFilePath::Empty);
        }
        if path.len() > Self::MAX_LEN {
            return Err(InvalidFilePath::TooLong);
        }
        if path
            .chars()
            .any(|c| c == '\\' || c == ':' || c.is_control())
        {
            return Err(InvalidFilePath::ForbiddenCharacter(path.to_owned()));
        }
        if path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..")
        {
            return Err(InvalidFilePath::BadSegment(path.to_owned()));
        }
        Ok(Self(path.into()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// Why a file operation was refused. The document is unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FileError {
    /// There is no such file.
    #[error("no file {0:?} in this room")]
    NotFound(FilePath),
    /// Something already has this path.
    #[error("{0:?} already exists in this room")]
    Exists(FilePath),
    /// The file is a root text of the document, which can be edited but not renamed or
    /// deleted.
    #[error("{0:?} is a root text of the document: it can be rewritten, not renamed or deleted")]
    RootText(FilePath),
}

/// Where a file lives.
enum Location {
    /// An entry of the `files` map.
    Entry(TextRef),
    /// A root text.
    Root(TextRef),
    /// The path is taken by an entry of the `files` map that is not a text (a plain value):
    /// never overwritten.
    Occupied,
}

fn locate<T: ReadTxn>(txn: &T, path: &FilePath) -> Option<Location> {
    if let Some(files) = txn.get_map(FILES_ROOT)
        && let Some(value) = files.get(txn, path.as_str())
    {
        return Some(match value {
            Out::YText(text) => Location::Entry(text),
            _ => Location::Occupied,
        });
    }
    // Root maps and arrays are not files and do not collide with entries of `files`.
    let (_, out) = txn
        .root_refs()
        .find(|(name, _)| *name == path.as_str() && !document::is_reserved_root(name))?;
    match document::classify_root(txn, out) {
        RootKind::Text(text) => Some(Location::Root(text)),
        _ => None,
    }
}

/// The text of `path`, if it is a file.
pub fn read_file<T: ReadTxn>(txn: &T, path: &FilePath) -> Option<String> {
    match locate(txn, path)? {
        Location::Entry(text) | Location::Root(text) => Some(text.get_string(txn)),
        Location::Occupied => None,
    }
}

/// Creates `path` with `content` in the `files` map.
pub fn create_file(
    txn: &mut TransactionMut<'_>,
    path: &FilePath,
    content: &str,
) -> Result<(), FileError> {
    if locate(txn, path).is_some() {
        return Err(FileError::Exists(path.clone()));
    }
    insert_entry(txn, path, content);
    Ok(())
}

fn insert_entry(txn: &mut TransactionMut<'_>, path: &FilePath, content: &str) {
    let files = txn.get_or_insert_map(FILES_ROOT);
    files.insert(txn, path.as_str(), TextPrelim::new(content));
}

/// Writes `content` to `path`, creating it when missing. An existing file gets a minimal
/// character diff, so text that did not change keeps its identity (and the cursors and
/// anchors in it). Answers whether the file was created.
pub fn write_file(
    txn: &mut TransactionMut<'_>,
    path: &FilePath,
    content: &str,
) -> Result<bool, FileError> {
    match locate(txn, path) {
        None => {
            insert_entry(txn, path, content);
            Ok(true)
        }
        Some(Location::Entry(text) | Location::Root(text)) => {
            document::diff_text(txn, &text, content);
            Ok(false)
        }
        Some(Location::Occupied) => Err(FileError::Exists(path.clone())),
    }
}

/// Moves `from` to `to` (an entry of the `files` map; its text is copied to the new path).
pub fn rename_file(
    txn: &mut TransactionMut<'_>,
    from: &FilePath,
    to: &FilePath,
) -> Result<(), FileError> {
    let content = match locate(txn, from) {
        Some(Location::Entry(text)) => text.get_string(txn),
        Some(Location::Root(_)) => return Err(FileError::RootText(from.clone())),
        Some(Location::Occupied) | None => return Err(FileError::NotFound(from.clone())),
    };
    if locate(txn, to).is_some() {
        return Err(FileError::Exists(to.clone()));
    }
    let files = txn.get_or_insert_map(FILES_ROOT);
    files.remove(txn, from.as_str());
    files.insert(txn, to.as_str(), TextPrelim::new(content));
    Ok(())
}

/// Deletes `path` from the `files` map.
pub fn delete_file(txn: &mut TransactionMut<'_>, path: &FilePath) -> Result<(), FileError> {
    match locate(txn, path) {
        Some(Location::Entry(_)) => {
            txn.get_or_insert_map(FILES_ROOT).remove(txn, path.as_str());
            Ok(())
        }
        Some(Location::Root(_)) => Err(FileError::RootText(path.clone())),
        Some(Location::Occupied) | None => Err(FileError::NotFound(path.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::new_doc;
    use yrs::{Text, Transact};

    fn path(p: &str) -> FilePath {
        FilePath::parse(p).unwrap()
    }

    #[test]
    fn paths() {
        for good in [
            "a",
            "src/main.rs",
            "docs/read me.md",
            "café/☕.txt",
            ".gitignore",
        ] {
            assert!(FilePath::parse(good).is_ok(), "{good}");
        }
        assert_eq!(FilePath::parse(""), Err(InvalidFilePath::Empty));
        for bad in [
            "/etc/passwd",
            "a//b",
            "a/",
            "../x",
            "a/../../x",
            "./a",
            "a/./b",
        ] {
            assert!(
                matches!(FilePath::parse(bad), Err(InvalidFilePath::BadSegment(_))),
                "{bad}"
            );
        }
        for bad in ["a\\b", "C:x", "a\nb", "a\0b"] {
            assert!(
                matches!(
                    FilePath::parse(bad),
                    Err(InvalidFilePath::ForbiddenCharacter(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            FilePath::parse(&"x".repeat(1025)),
            Err(InvalidFilePath::TooLong)
        );
    }

    #[test]
    fn create_write_rename_delete() {
        let doc = new_doc();
        let mut txn = doc.transact_mut();
        create_file(&mut txn, &path("a.txt"), "hello").unwrap();
        assert_eq!(
            create_file(&mut txn, &path("a.txt"), "again"),
            Err(FileError::Exists(path("a.txt")))
        );
        assert!(!write_file(&mut txn, &path("a.txt"), "hello world").unwrap());
        assert!(write_file(&mut txn, &path("b.txt"), "new").unwrap());
        assert_eq!(
            rename_file(&mut txn, &path("a.txt"), &path("b.txt")),
            Err(FileError::Exists(path("b.txt")))
        );
        rename_file(&mut txn, &path("a.txt"), &path("dir/c.txt")).unwrap();
        assert_eq!(read_file(&txn, &path("a.txt")), None);
        assert_eq!(
            read_file(&txn, &path("dir/c.txt")).as_deref(),
            Some("hello world")
        );
        delete_file(&mut txn, &path("b.txt")).unwrap();
        assert_eq!(
            delete_file(&mut txn, &path("b.txt")),
            Err(FileError::NotFound(path("b.txt")))
        );
    }

    #[test]
    fn root_texts_are_rewritten_but_never_renamed_or_deleted() {
        let doc = new_doc();
        let mut txn = doc.transact_mut();
        txn.get_or_insert_text("notes").insert(&mut txn, 0, "one");
        assert!(!write_file(&mut txn, &path("notes"), "two").unwrap());
        assert_eq!(read_file(&txn, &path("notes")).as_deref(), Some("two"));
        assert_eq!(
            delete_file(&mut txn, &path("notes")),
            Err(FileError::RootText(path("notes")))
        );
        assert_eq!(
            rename_file(&mut txn, &path("notes"), &path("n2")),
            Err(FileError::RootText(path("notes")))
        );
        // The files map itself and the annotation maps are never files, even when empty.
        create_file(&mut txn, &path("x"), "").unwrap();
        delete_file(&mut txn, &path("x")).unwrap();
        txn.get_or_insert_map(crate::document::COMMENTS_ROOT);
        assert_eq!(read_file(&txn, &path("files")), None);
        assert_eq!(read_file(&txn, &path("comments")), None);
        create_file(&mut txn, &path("comments"), "a file").unwrap();
        assert_eq!(
            read_file(&txn, &path("comments")).as_deref(),
            Some("a file")
        );
    }
}
