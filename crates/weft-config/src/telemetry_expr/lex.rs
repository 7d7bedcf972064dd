//! Tokens of the expression language, with their byte offsets.

use super::ExprError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Punct(&'static str),
    Eof,
}

impl Tok {
    pub(super) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Int(i) => format!("number {i}"),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "end of expression".to_string(),
        }
    }
}

pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) offset: usize,
    pub(super) len: usize,
}

const PUNCT: &[&str] = &[
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "?", ":", "+",
    "-", "*", "/", "%", "{", "}", "=", "&", "|",
];

pub(super) fn err(offset: usize, len: usize, message: impl Into<String>) -> ExprError {
    ExprError {
        offset,
        len,
        message: message.into(),
        hint: None,
        unknown_attribute: false,
    }
}

pub(super) fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(text[start..i].to_string()),
                offset: start,
                len: i - start,
            });
        } else if c.is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &text[start..i];
            if i < b.len() && (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
                return Err(err(
                    start,
                    i + 2 - start,
                    "floating-point numbers are not supported",
                )
                .with_hint("compare against an integer"));
            }
            // CEL's unsigned literal `5u`.
            if i < b.len() && (b[i] == b'u' || b[i] == b'U') {
                i += 1;
            }
            let n = digits
                .parse()
                .map_err(|_| err(start, i - start, format!("integer {digits} is too large")))?;
            out.push(Token {
                tok: Tok::Int(n),
                offset: start,
                len: i - start,
            });
        } else if c == b'\'' || c == b'"' {
            let (s, end) = string_literal(text, start)?;
            out.push(Token {
                tok: Tok::Str(s),
                offset: start,
                len: end - start,
            });
            i = end;
        } else if let Some(p) = PUNCT.iter().find(|p| text[i..].starts_with(**p)) {
            out.push(Token {
                tok: Tok::Punct(p),
                offset: start,
                len: p.len(),
            });
            i += p.len();
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(err(
                start,
                ch.len_utf8(),
                format!("unexpected character `{ch}`"),
            ));
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: text.len(),
        len: 0,
    });
    Ok(out)
}

/// A quoted string starting at `start`; returns the value and the offset after the
/// closing quote.
fn string_literal(text: &str, start: usize) -> Result<(String, usize), ExprError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        let at = start + 1 + i;
        if c == quote {
            return Ok((out, at + 1));
        }
        if c == '\\' {
            let Some((_, e)) = chars.next() else { break };
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '\\' | '\'' | '"' => e,
                other => {
                    return Err(err(
                        at,
                        1 + other.len_utf8(),
                        format!("unknown escape `\\{other}`"),
                    )
                    .with_hint("escape only \\\\, \\', \\\", \\n, \\t or \\r"));
                }
            });
        } else {
            out.push(c);
        }
    }
    Err(err(start, text.len() - start, "unterminated string")
        .with_hint(format!("close it with {quote}")))
}

impl ExprError {
    pub(super) fn with_hint(mut self, hint: impl Into<String>) -> ExprError {
        self.hint = Some(hint.into());
        self
    }
}
