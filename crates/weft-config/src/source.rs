//! Source files and positions inside them.
//!
//! Every object weft loads remembers where it came from so that a diagnostic can point at
//! `file:line:col` and show the offending line.

use std::fmt;
use std::sync::Arc;

/// A loaded file (or stdin) with its full text, kept for rendering diagnostics.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// A position in a source: 1-based line and column (columns count characters), plus the
/// byte offset used by renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub offset: usize,
    pub line: usize,
    pub col: usize,
}

/// A range in one source file.
#[derive(Clone, PartialEq, Eq)]
pub struct Span {
    pub file: Arc<SourceFile>,
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    /// The span of a whole file, used when a problem has no finer position.
    pub fn whole_file(file: Arc<SourceFile>) -> Span {
        let end = Pos {
            offset: file.text.len(),
            line: file.text.lines().count().max(1),
            col: 1,
        };
        Span {
            file,
            start: Pos {
                offset: 0,
                line: 1,
                col: 1,
            },
            end,
        }
    }

    pub fn file_name(&self) -> &str {
        &self.file.name
    }

    /// The text of the line the span starts on, without its line break.
    pub fn line_text(&self) -> &str {
        self.file
            .text
            .lines()
            .nth(self.start.line.saturating_sub(1))
            .unwrap_or("")
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.name, self.start.line, self.start.col
        )
    }
}
