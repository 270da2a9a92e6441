//! What can be wrong with an object file: a document that does not parse at all (the whole file
//! is refused, the last good state stays), or one object that does not validate (that object is
//! skipped, the rest applies).

use std::fmt;

/// One object is unusable. The message names the object and the field, in the API's own
/// spelling, so it can be found in the file:
/// `Service default/web: spec.ports[1].port: 0 is not a valid port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectError {
    /// `Service default/web`, `Node b`, or `document 3` when the object has no name.
    pub object: String,
    /// `spec.ports[1].port`; empty when the problem is the object as a whole.
    pub field: String,
    pub message: String,
    /// 1-based index of the YAML document (or JSON value) it came from, when known; not part of
    /// the message (a watcher has no documents), but logged beside it.
    pub document: Option<usize>,
}

impl ObjectError {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ObjectError {
            object: object.into(),
            field: field.into(),
            message: message.into(),
            document: None,
        }
    }

    pub(crate) fn in_document(mut self, document: usize) -> Self {
        self.document = Some(document);
        self
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.object, self.message)
        } else {
            write!(f, "{}: {}: {}", self.object, self.field, self.message)
        }
    }
}

impl std::error::Error for ObjectError {}

/// The file is not YAML (or JSON) at all: nothing in it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}: {message}")]
pub struct ParseError {
    /// 1-based index of the document that failed.
    pub document: usize,
    /// The parser's message, with its line and column.
    pub message: String,
}
