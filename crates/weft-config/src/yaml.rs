//! YAML (and JSON, which is YAML) parsed into a tree whose every node knows its span.
//!
//! Scalars keep their text and whether they were quoted; their type (null, bool, number,
//! string) is decided when a typed field asks for it, following the YAML 1.2 core schema that
//! Kubernetes' decoder uses for plain scalars.

use std::sync::Arc;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::path::{FieldPath, Segment};
use crate::source::{Pos, SourceFile, Span};

/// Documents deeper than this are refused: nothing in a mesh config nests this far, and a
/// bound keeps hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 128;
/// Aliases may expand to at most this many nodes per document (guards "billion laughs").
pub const MAX_ALIAS_NODES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, non-block) scalars are subject to type resolution; quoted ones are
    /// always strings.
    pub plain: bool,
}

/// What a scalar resolves to under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

impl Scalar {
    pub fn resolve(&self) -> Resolved<'_> {
        if !self.plain {
            return Resolved::Str(&self.text);
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            "true" | "True" | "TRUE" => return Resolved::Bool(true),
            "false" | "False" | "FALSE" => return Resolved::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
                return Resolved::Float(f64::INFINITY);
            }
            "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
            _ => {}
        }
        if let Some(i) = parse_int(t) {
            return Resolved::Int(i);
        }
        if looks_like_float(t)
            && let Ok(f) = t.parse::<f64>()
        {
            return Resolved::Float(f);
        }
        Resolved::Str(t)
    }
}

fn parse_int(t: &str) -> Option<i128> {
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn looks_like_float(t: &str) -> bool {
    let body = t.trim_start_matches(['-', '+']);
    !body.is_empty()
        && body
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
}

impl Node {
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => "null",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) => "an integer",
                Resolved::Float(_) => "a number",
                Resolved::Str(_) => "a string",
            },
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Str(v) => Some(v),
                _ => None,
            },
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.resolve() == Resolved::Null)
    }

    /// The value stored under a string key of a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node stored under a string key of a map.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.value, Value::Scalar(s) if s.text == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// The deepest node along `path` and whether the whole path was found. A missing field is
    /// reported at its parent, which is where the user has to add it.
    pub fn lookup(&self, path: &FieldPath) -> (&Node, bool) {
        let mut node = self;
        for seg in &path.0 {
            let next = match (seg, &node.value) {
                (Segment::Key(k), Value::Map(_)) => node.get(k),
                (Segment::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// Like [`Node::lookup`], but when the last segment is a map key, returns the key's node:
    /// "unknown field" and similar diagnostics read best pointing at the key.
    pub fn lookup_key(&self, path: &FieldPath) -> (&Node, bool) {
        if let Some((Segment::Key(k), parent)) = path.0.split_last() {
            let (p, found) = self.lookup(&FieldPath(parent.to_vec()));
            if found && let Some((key, _)) = p.entry(k) {
                return (key, true);
            }
        }
        self.lookup(path)
    }
}

/// A YAML syntax or structure error, with its position.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

/// Parse every document of a YAML stream. Empty documents (`---` with nothing after) yield
/// no node.
pub fn parse_documents(file: &Arc<SourceFile>) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder {
        file: file.clone(),
        parser: Parser::new_from_str(&file.text),
        anchors: Vec::new(),
        alias_budget: MAX_ALIAS_NODES,
    };
    builder.stream()
}

struct Builder<'a> {
    file: Arc<SourceFile>,
    parser: Parser<std::str::Chars<'a>>,
    anchors: Vec<(usize, Node)>,
    alias_budget: usize,
}

impl Builder<'_> {
    fn pos(&self, m: Marker) -> Pos {
        Pos {
            offset: m.index(),
            line: m.line(),
            col: m.col() + 1,
        }
    }

    fn span(&self, start: Marker, end: Marker) -> Span {
        Span {
            file: self.file.clone(),
            start: self.pos(start),
            end: self.pos(end),
        }
    }

    fn error(&self, m: Marker, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            span: self.span(m, m),
        }
    }

    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|e| {
            let m = *e.marker();
            // The scanner's own text carries its position again; keep only the reason.
            let info = e.info().to_string();
            self.error(m, format!("invalid YAML: {info}"))
        })
    }

    fn stream(&mut self) -> Result<Vec<Node>, SyntaxError> {
        let mut docs = Vec::new();
        loop {
            let (ev, m) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(docs),
                Event::DocumentStart => {
                    self.anchors.clear();
                    self.alias_budget = MAX_ALIAS_NODES;
                    let (ev, m) = self.next()?;
                    if ev == Event::DocumentEnd {
                        continue;
                    }
                    let node = self.node(ev, m, 0)?;
                    if !node.is_null() {
                        docs.push(node);
                    }
                }
                other => return Err(self.error(m, format!("unexpected YAML event {other:?}"))),
            }
        }
    }

    fn node(&mut self, ev: Event, start: Marker, depth: usize) -> Result<Node, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error(
                start,
                format!("document nests deeper than {MAX_DEPTH} levels; weft refuses it"),
            ));
        }
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                let mut span = self.span(start, start);
                // For a one-line plain scalar the source text is the value, so the end is
                // known exactly; other styles are underlined at their start only.
                let quotes = match style {
                    TScalarStyle::Plain => Some(0),
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => Some(2),
                    _ => None,
                };
                if let Some(q) = quotes.filter(|_| !text.contains('\n')) {
                    // Escapes make quoted source longer than the value; the underline is then
                    // a little short, never wrong about where the value starts.
                    span.end.offset += text.len() + q;
                    span.end.col += text.chars().count() + q;
                }
                let node = Node {
                    span,
                    value: Value::Scalar(Scalar { text, plain }),
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::SequenceEnd {
                        let node = Node {
                            span: self.span(start, m),
                            value: Value::Seq(items),
                        };
                        break (node, anchor);
                    }
                    items.push(self.node(ev, m, depth + 1)?);
                }
            }
            Event::MappingStart(anchor, _) => {
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::MappingEnd {
                        let node = Node {
                            span: self.span(start, m),
                            value: Value::Map(entries),
                        };
                        break (node, anchor);
                    }
                    let key = self.node(ev, m, depth + 1)?;
                    let (ev, m) = self.next()?;
                    let value = self.node(ev, m, depth + 1)?;
                    if let Value::Scalar(k) = &key.value
                        && let Some((prev, _)) = entries
                            .iter()
                            .find(|(p, _)| matches!(&p.value, Value::Scalar(s) if s.text == k.text))
                    {
                        return Err(SyntaxError {
                            message: format!(
                                "duplicate key `{}` (first defined at line {}); remove one of them",
                                k.text, prev.span.start.line
                            ),
                            span: key.span.clone(),
                        });
                    }
                    entries.push((key, value));
                }
            }
            Event::Alias(id) => {
                let Some((_, target)) = self.anchors.iter().rev().find(|(a, _)| *a == id) else {
                    return Err(self.error(start, "alias refers to an unknown anchor"));
                };
                let target = target.clone();
                let size = count_nodes(&target);
                if size > self.alias_budget {
                    return Err(self.error(
                        start,
                        format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes; weft refuses it"
                        ),
                    ));
                }
                self.alias_budget -= size;
                return Ok(target);
            }
            other => return Err(self.error(start, format!("unexpected YAML event {other:?}"))),
        };
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        Ok(node)
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Node>, SyntaxError> {
        parse_documents(&Arc::new(SourceFile {
            name: "t.yaml".into(),
            text: text.into(),
        }))
    }

    #[test]
    fn positions_are_one_based() {
        let docs = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        let (c, found) = docs[0].lookup(&FieldPath::parse("b.c[1]"));
        assert!(found);
        assert_eq!((c.span.start.line, c.span.start.col), (3, 10));
        assert_eq!(c.as_str(), Some("y"));
        let (key, _) = docs[0].lookup_key(&FieldPath::parse("b.c"));
        assert_eq!((key.span.start.line, key.span.start.col), (3, 3));
    }

    #[test]
    fn multi_document_skips_empty() {
        let docs = parse("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn resolves_core_schema() {
        let s = |t: &str| Scalar {
            text: t.into(),
            plain: true,
        };
        assert_eq!(s("80").resolve(), Resolved::Int(80));
        assert_eq!(s("true").resolve(), Resolved::Bool(true));
        assert_eq!(s("1.5").resolve(), Resolved::Float(1.5));
        assert_eq!(s("v1").resolve(), Resolved::Str("v1"));
        assert_eq!(s("10s").resolve(), Resolved::Str("10s"));
        assert_eq!(s("").resolve(), Resolved::Null);
        let q = Scalar {
            text: "80".into(),
            plain: false,
        };
        assert_eq!(q.resolve(), Resolved::Str("80"));
    }

    #[test]
    fn duplicate_keys_and_depth_are_errors() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
        assert_eq!(e.span.start.line, 2);
        let deep = "[".repeat(500) + &"]".repeat(500);
        let e = parse(&deep).unwrap_err();
        assert!(
            e.message.contains("deeper") || e.message.contains("recursion"),
            "{}",
            e.message
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            y.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        assert!(parse(&y).unwrap_err().message.contains("aliases expand"));
    }
}
