//! A serde deserializer over the spanned YAML tree.
//!
//! Typed structs derive `Deserialize` as usual; this deserializer makes every serde error
//! (unknown field, wrong type, bad enum value, missing field) carry the field path and the
//! span of the node responsible, plus a "did you mean" hint where one fits.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::path::{FieldPath, Segment};
use crate::source::Span;
use crate::yaml::{Node, Resolved, Scalar, Value};

/// A schema error: what is wrong, where, and how to fix it.
#[derive(Debug, Clone)]
pub struct DeError {
    pub message: String,
    pub hint: Option<String>,
    pub path: FieldPath,
    pub span: Option<Span>,
}

impl DeError {
    fn new(message: String) -> DeError {
        DeError {
            message,
            hint: None,
            path: FieldPath::root(),
            span: None,
        }
    }

    /// Attach the position of the innermost node that saw the error; outer frames keep it.
    fn locate(mut self, node: &Node, frame: Option<&Frame<'_>>) -> DeError {
        if self.span.is_none() {
            self.span = Some(node.span.clone());
            self.path = frame.map(Frame::path).unwrap_or_default();
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_root() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new(format!("unknown field `{field}`"));
        e.hint = Some(match did_you_mean(field, expected) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "this object takes no fields".to_string(),
            None => format!("valid fields here: {}", expected.join(", ")),
        });
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new(format!("unknown value `{variant}`"));
        let one_of = format!("expected one of {}", expected.join(", "));
        e.hint = Some(match did_you_mean(variant, expected) {
            Some(s) => format!("did you mean `{s}`? ({one_of})"),
            None => one_of,
        });
        e
    }

    fn missing_field(field: &'static str) -> Self {
        let mut e = DeError::new(format!("missing required field `{field}`"));
        e.hint = Some(format!("add `{field}:` here"));
        e
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}, found {unexp}"))
    }
}

/// The closest candidate to `word`, if any is close enough to be a plausible typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            let d = strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase());
            (d, *c)
        })
        .filter(|(d, c)| {
            *d <= (c.len() / 3).clamp(1, 3)
                || lower.replace(['_', '-'], "") == c.to_ascii_lowercase()
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Deserialize a typed value from a node. `base` is the path of `node` in its document.
pub fn from_node<T: DeserializeOwned>(node: &Node, base: &FieldPath) -> Result<T, DeError> {
    let root = Frame {
        parent: None,
        seg: SegRef::Base(base),
    };
    T::deserialize(NodeDe {
        node,
        frame: Some(&root),
    })
    .map_err(|e| e.locate(node, Some(&root)))
}

/// Path frames live on the stack while deserializing; the path is only built on error.
struct Frame<'p> {
    parent: Option<&'p Frame<'p>>,
    seg: SegRef<'p>,
}

enum SegRef<'p> {
    Base(&'p FieldPath),
    Key(&'p str),
    Index(usize),
}

impl Frame<'_> {
    fn path(&self) -> FieldPath {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(f) = cur {
            match &f.seg {
                SegRef::Base(p) => segs.extend(p.0.iter().rev().cloned()),
                SegRef::Key(k) => segs.push(Segment::Key(k.to_string())),
                SegRef::Index(i) => segs.push(Segment::Index(*i)),
            }
            cur = f.parent;
        }
        segs.reverse();
        FieldPath(segs)
    }
}

struct NodeDe<'de, 'p> {
    node: &'de Node,
    frame: Option<&'p Frame<'p>>,
}

impl<'de> NodeDe<'de, '_> {
    fn type_error(&self, expected: &str) -> DeError {
        let found = match &self.node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Str(t) => format!("the string \"{t}\""),
                _ => format!("{} `{}`", self.node.kind_name(), s.text),
            },
            _ => self.node.kind_name().to_string(),
        };
        let mut e = DeError::new(format!("expected {expected}, found {found}"));
        if let Value::Scalar(s) = &self.node.value {
            if expected == "a string" {
                e.hint = Some(format!("quote it: \"{}\"", s.text));
            } else if !s.plain
                && (expected == "an integer"
                    || expected == "a number"
                    || expected == "true or false")
                && (Scalar {
                    text: s.text.clone(),
                    plain: true,
                })
                .resolve()
                    != Resolved::Str(&s.text)
            {
                e.hint = Some(format!("remove the quotes: {}", s.text));
            }
        }
        e.locate(self.node, self.frame)
    }

    fn scalar(&self) -> Option<Resolved<'de>> {
        match &self.node.value {
            Value::Scalar(s) => Some(s.resolve()),
            _ => None,
        }
    }

    fn visit_int<V: Visitor<'de>>(&self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(Resolved::Int(i)) => {
                if let Ok(n) = u64::try_from(i) {
                    v.visit_u64(n)
                } else if let Ok(n) = i64::try_from(i) {
                    v.visit_i64(n)
                } else {
                    v.visit_i128(i)
                }
            }
            _ => Err(self.type_error("an integer")),
        }
    }
}

macro_rules! int_methods {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            self.visit_int(v).map_err(|e| e.locate(self.node, self.frame))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Null => v.visit_unit(),
                Resolved::Bool(b) => v.visit_bool(b),
                Resolved::Int(_) => return self.visit_int(v),
                Resolved::Float(f) => v.visit_f64(f),
                Resolved::Str(t) => v.visit_borrowed_str(t),
            },
            Value::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                frame: self.frame,
            }),
            Value::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                frame: self.frame,
            }),
        };
        r.map_err(|e| e.locate(self.node, self.frame))
    }

    int_methods!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(Resolved::Float(f)) => v.visit_f64(f),
            Some(Resolved::Int(i)) => v.visit_f64(i as f64),
            _ => Err(self.type_error("a number")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(Resolved::Bool(b)) => v.visit_bool(b),
            _ => Err(self.type_error("true or false")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(Resolved::Str(t)) => v.visit_borrowed_str(t),
            // As Kubernetes' decoder does, an explicit null leaves a string empty.
            Some(Resolved::Null) => v.visit_borrowed_str(""),
            _ => Err(self.type_error("a string")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_unit()
        } else {
            Err(self.type_error("null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => v.visit_seq(SeqDe {
                items: items.iter().enumerate(),
                frame: self.frame,
            }),
            _ if self.node.is_null() => v.visit_seq(SeqDe {
                items: [].iter().enumerate(),
                frame: self.frame,
            }),
            _ => Err(self.type_error("a list")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => v.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                frame: self.frame,
            }),
            _ if self.node.is_null() => v.visit_map(MapDe {
                entries: [].iter(),
                value: None,
                frame: self.frame,
            }),
            _ => Err(self.type_error("a map")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) => match s.resolve() {
                Resolved::Str(t) => v.visit_enum(t.into_deserializer()),
                // Enums are sometimes written as their proto number.
                Resolved::Int(i) => v.visit_enum(i.to_string().into_deserializer()),
                _ => Err(self.type_error("one of the allowed values")),
            },
            Value::Map(entries) if entries.len() == 1 => v.visit_enum(EnumDe {
                key: &entries[0].0,
                value: &entries[0].1,
                frame: self.frame,
            }),
            _ => Err(self.type_error("one of the allowed values")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) => v.visit_borrowed_str(&s.text),
            _ => Err(self.type_error("a field name")),
        }
        .map_err(|e| e.locate(self.node, self.frame))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqDe<'de, 'p, I: Iterator<Item = (usize, &'de Node)>> {
    items: I,
    frame: Option<&'p Frame<'p>>,
}

impl<'de, I: Iterator<Item = (usize, &'de Node)>> de::SeqAccess<'de> for SeqDe<'de, '_, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        let frame = Frame {
            parent: self.frame,
            seg: SegRef::Index(i),
        };
        seed.deserialize(NodeDe {
            node,
            frame: Some(&frame),
        })
        .map(Some)
        .map_err(|e| e.locate(node, Some(&frame)))
    }
}

struct MapDe<'de, 'p> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    value: Option<(&'de Node, &'de Node)>,
    frame: Option<&'p Frame<'p>>,
}

impl<'de> de::MapAccess<'de> for MapDe<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        let text = match &key.value {
            Value::Scalar(s) => s.text.as_str(),
            _ => "<complex key>",
        };
        let frame = Frame {
            parent: self.frame,
            seg: SegRef::Key(text),
        };
        seed.deserialize(KeyDe { node: key })
            .map(Some)
            .map_err(|e| e.locate(key, Some(&frame)))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, node) = self
            .value
            .take()
            .expect("next_value_seed called before next_key_seed");
        let text = match &key.value {
            Value::Scalar(s) => s.text.as_str(),
            _ => "<complex key>",
        };
        let frame = Frame {
            parent: self.frame,
            seg: SegRef::Key(text),
        };
        seed.deserialize(NodeDe {
            node,
            frame: Some(&frame),
        })
        .map_err(|e| e.locate(node, Some(&frame)))
    }
}

/// Map keys are always read as their text: `80: x` is key "80" for a string-keyed map.
struct KeyDe<'de> {
    node: &'de Node,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) => v.visit_borrowed_str(&s.text),
            _ => Err(DeError::new(
                "map keys must be plain values, not lists or maps".into(),
            )),
        }
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Scalar(s) => match s.text.parse::<u32>() {
                Ok(n) => v.visit_u32(n),
                Err(_) => Err(DeError::new(format!(
                    "expected a number as key, found `{}`",
                    s.text
                ))),
            },
            _ => Err(DeError::new("map keys must be plain values".into())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct EnumDe<'de, 'p> {
    key: &'de Node,
    value: &'de Node,
    frame: Option<&'p Frame<'p>>,
}

impl<'de, 'p> de::EnumAccess<'de> for EnumDe<'de, 'p> {
    type Error = DeError;
    type Variant = NodeDe<'de, 'p>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let v = seed.deserialize(KeyDe { node: self.key })?;
        Ok((
            v,
            NodeDe {
                node: self.value,
                frame: self.frame,
            },
        ))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, v)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Debug, Deserialize, Default)]
    #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
    struct Route {
        name: String,
        weight: Option<u32>,
        hosts: Vec<String>,
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[allow(clippy::upper_case_acronyms)]
    enum Mode {
        STRICT,
        PERMISSIVE,
    }

    fn load<T: DeserializeOwned>(text: &str) -> Result<T, DeError> {
        let file = Arc::new(SourceFile {
            name: "t.yaml".into(),
            text: text.into(),
        });
        let docs = crate::yaml::parse_documents(&file).unwrap();
        from_node(&docs[0], &FieldPath::parse("spec"))
    }

    #[test]
    fn reads_typed_values() {
        let r: Route = load("name: a\nweight: 10\nhosts: [x, y]\nmode: STRICT\n").unwrap();
        assert_eq!(r.weight, Some(10));
        assert_eq!(r.hosts, vec!["x", "y"]);
        assert_eq!(r.mode, Some(Mode::STRICT));
    }

    #[test]
    fn unknown_field_has_position_and_suggestion() {
        let e = load::<Route>("name: a\nwieght: 10\n").unwrap_err();
        assert_eq!(e.message, "unknown field `wieght`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `weight`?"));
        assert_eq!(e.path.to_string(), "spec.wieght");
        let span = e.span.unwrap();
        assert_eq!((span.start.line, span.start.col), (2, 1));
    }

    #[test]
    fn wrong_type_points_at_value() {
        let e = load::<Route>("hosts:\n  - a\n  - 80\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.hosts[1]");
        assert!(e.message.contains("expected a string"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("quote it: \"80\""));
        assert_eq!(e.span.unwrap().start.line, 3);
        let e = load::<Route>("weight: ten\n").unwrap_err();
        assert!(e.message.contains("expected an integer"), "{}", e.message);
        let e = load::<Route>("weight: -1\n").unwrap_err();
        assert_eq!(e.path.to_string(), "spec.weight");
    }

    #[test]
    fn bad_enum_value_suggests() {
        let e = load::<Route>("mode: STRIC\n").unwrap_err();
        assert_eq!(e.message, "unknown value `STRIC`");
        assert!(e.hint.unwrap().starts_with("did you mean `STRICT`?"));
    }

    #[test]
    fn suggestions_are_plausible_only() {
        assert_eq!(
            did_you_mean("destnation", &["destination", "weight"]),
            Some("destination")
        );
        assert_eq!(did_you_mean("retry_on", &["retryOn"]), Some("retryOn"));
        assert_eq!(did_you_mean("zzzz", &["destination", "weight"]), None);
    }
}
