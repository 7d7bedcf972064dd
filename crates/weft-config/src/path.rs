//! Field paths such as `spec.http[0].route[1].weight`.
//!
//! Validation and analysis report problems by field path; the path is resolved against the
//! parsed YAML tree to find the exact line and column.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// Parse `a.b[2].c` (keys containing dots can be written `a["x.y"]`).
    pub fn parse(s: &str) -> FieldPath {
        let mut segs = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
                continue;
            }
            if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").unwrap_or(r.len());
                segs.push(Segment::Key(r[..end].to_string()));
                rest = r.get(end + 2..).unwrap_or("");
                continue;
            }
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                match r[..end].parse() {
                    Ok(i) => segs.push(Segment::Index(i)),
                    Err(_) => segs.push(Segment::Key(r[..end].to_string())),
                }
                rest = r.get(end + 1..).unwrap_or("");
                continue;
            }
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            segs.push(Segment::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
        FieldPath(segs)
    }

    pub fn key(&self, k: impl Into<String>) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Segment::Index(i));
        p
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if k.contains(['.', '[', ']']) => write!(f, "[\"{k}\"]")?,
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> FieldPath {
        FieldPath::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "spec.http[0].route[1].weight",
            "metadata.labels[\"app.kubernetes.io/name\"]",
            "spec",
        ] {
            assert_eq!(FieldPath::parse(s).to_string(), s);
        }
        assert_eq!(
            FieldPath::parse("a[3]").0,
            vec![Segment::Key("a".into()), Segment::Index(3)]
        );
    }
}
