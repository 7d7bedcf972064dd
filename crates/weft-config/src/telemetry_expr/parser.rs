//! Recursive descent over the tokens, CEL precedence: `?:` < `||` < `&&` < comparisons
//! < `+` < unary `!` / `-` < member calls.

use super::lex::{Tok, Token, err};
use super::{ATTRIBUTES, CompareOp, Expr, ExprError, MAPS, MapAttribute, StringMethod, suggest};

pub(super) struct Parser {
    pub(super) tokens: Vec<Token>,
    pub(super) pos: usize,
    pub(super) end: usize,
}

impl Parser {
    pub(super) fn peek(&self) -> &Tok {
        &self.tokens[self.pos].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn bump(&mut self) -> &Token {
        let t = &self.tokens[self.pos];
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Tok::Punct(q) if *q == p) {
            self.bump();
            true
        } else {
            false
        }
    }

    pub(super) fn error_at(&self, offset: usize, len: usize, msg: impl Into<String>) -> ExprError {
        // The span stays inside the text: at the end (`found end of expression`) it is empty.
        let offset = offset.min(self.end);
        err(offset, len.min(self.end - offset), msg)
    }

    pub(super) fn error_here(&self, msg: impl Into<String>) -> ExprError {
        let t = &self.tokens[self.pos];
        self.error_at(t.offset, t.len.max(1), msg)
    }

    fn expect(&mut self, p: &str) -> Result<(), ExprError> {
        if self.eat(p) {
            Ok(())
        } else {
            let msg = format!("expected `{p}`, found {}", self.peek().describe());
            Err(self.error_here(msg))
        }
    }

    /// `cond ? a : b` binds loosest; it is right-associative.
    pub(super) fn expr(&mut self, depth: usize) -> Result<Expr, ExprError> {
        if depth > 64 {
            return Err(self.error_here("the expression nests too deeply"));
        }
        let c = self.or(depth)?;
        if self.eat("?") {
            let a = self.expr(depth + 1)?;
            self.expect(":")?;
            let b = self.expr(depth + 1)?;
            return Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(c)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let mut e = self.and(depth)?;
        while self.eat("||") {
            e = Expr::Or(Box::new(e), Box::new(self.and(depth)?));
        }
        Ok(e)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let mut e = self.relation(depth)?;
        while self.eat("&&") {
            e = Expr::And(Box::new(e), Box::new(self.relation(depth)?));
        }
        Ok(e)
    }

    fn relation(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let e = self.sum(depth)?;
        let op = match self.peek() {
            Tok::Punct("==") => CompareOp::Eq,
            Tok::Punct("!=") => CompareOp::Ne,
            Tok::Punct("<") => CompareOp::Lt,
            Tok::Punct("<=") => CompareOp::Le,
            Tok::Punct(">") => CompareOp::Gt,
            Tok::Punct(">=") => CompareOp::Ge,
            Tok::Punct("=") => {
                return Err(self
                    .error_here("`=` is not an operator")
                    .with_hint("compare with `==`"));
            }
            Tok::Ident(w) if w == "in" => {
                return Err(self
                    .error_here("the `in` operator is not supported")
                    .with_hint("compare with `==` and join the cases with `||`"));
            }
            _ => return Ok(e),
        };
        self.bump();
        let rhs = self.sum(depth)?;
        Ok(Expr::Compare(Box::new(e), op, Box::new(rhs)))
    }

    fn sum(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let mut e = self.unary(depth)?;
        loop {
            match self.peek() {
                Tok::Punct("+") => {
                    self.bump();
                    e = Expr::Add(Box::new(e), Box::new(self.unary(depth)?));
                }
                Tok::Punct(p @ ("-" | "*" | "/" | "%")) => {
                    let msg = format!("the `{p}` operator is not supported");
                    return Err(self
                        .error_here(msg)
                        .with_hint("weft supports `+` (strings and integers)"));
                }
                Tok::Punct(p @ ("&" | "|")) => {
                    let msg = format!("`{p}` is not an operator");
                    let hint = format!("write `{p}{p}`");
                    return Err(self.error_here(msg).with_hint(hint));
                }
                _ => return Ok(e),
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        if depth > 64 {
            return Err(self.error_here("the expression nests too deeply"));
        }
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if matches!(self.peek(), Tok::Punct("-")) && matches!(self.peek_at(1), Tok::Int(_)) {
            self.bump();
            let Tok::Int(n) = self.bump().tok else {
                unreachable!("checked above")
            };
            return Ok(Expr::Int(-n));
        }
        let e = self.primary(depth)?;
        self.postfix(e, depth)
    }

    /// Method calls on a value: `x.contains('y')`.
    fn postfix(&mut self, mut e: Expr, depth: usize) -> Result<Expr, ExprError> {
        while matches!(self.peek(), Tok::Punct(".")) {
            self.bump();
            let t = self.bump();
            let (offset, len) = (t.offset, t.len);
            let Tok::Ident(name) = t.tok.clone() else {
                return Err(self.error_at(offset, len.max(1), "expected a method name after `.`"));
            };
            let method = match name.as_str() {
                "contains" => StringMethod::Contains,
                "startsWith" => StringMethod::StartsWith,
                "endsWith" => StringMethod::EndsWith,
                "matches" => StringMethod::Matches,
                other => {
                    let mut e = self.error_at(offset, len, format!("unknown method `{other}`"));
                    e.hint = Some(
                        match suggest(other, &["contains", "startsWith", "endsWith", "matches"]) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => "string methods are contains, startsWith, endsWith and matches"
                                .to_string(),
                        },
                    );
                    return Err(e);
                }
            };
            self.expect("(")?;
            let arg = self.expr(depth + 1)?;
            self.expect(")")?;
            e = Expr::Call(Box::new(e), method, Box::new(arg));
        }
        Ok(e)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, ExprError> {
        let t = self.bump();
        let (offset, len) = (t.offset, t.len);
        match t.tok.clone() {
            Tok::Str(s) => Ok(Expr::String(s)),
            Tok::Int(n) => Ok(Expr::Int(n)),
            Tok::Punct("(") => {
                let e = self.expr(depth + 1)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "null" => Err(self
                    .error_at(offset, len, "`null` is not supported")
                    .with_hint("test presence with has(...)")),
                "has" | "string" | "int" if matches!(self.peek(), Tok::Punct("(")) => {
                    self.bump();
                    let arg_at = self.tokens[self.pos].offset;
                    let arg = self.expr(depth + 1)?;
                    self.expect(")")?;
                    Ok(match name.as_str() {
                        "has" => {
                            if !matches!(arg, Expr::Attr(_) | Expr::Index(..)) {
                                return Err(self
                                    .error_at(arg_at, 1, "has() takes an attribute or a map entry")
                                    .with_hint("e.g. has(request.headers['x-user'])"));
                            }
                            Expr::Has(Box::new(arg))
                        }
                        "string" => Expr::ToString(Box::new(arg)),
                        _ => Expr::ToInt(Box::new(arg)),
                    })
                }
                _ if matches!(self.peek(), Tok::Punct("(")) => {
                    let mut e = self.error_at(offset, len, format!("unknown function `{name}`"));
                    e.hint = Some(match suggest(&name, &["has", "string", "int"]) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "functions are has(), string() and int()".to_string(),
                    });
                    Err(e)
                }
                _ => self.attribute(name, offset),
            },
            other => Err(self.error_at(
                offset,
                len.max(1),
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    /// `a.b.c`, optionally followed by `['key']` (or `.key`) on a map.
    fn attribute(&mut self, first: String, offset: usize) -> Result<Expr, ExprError> {
        let mut path = first;
        let mut end = offset + path.len();
        // Extend the dotted name while it still names (or leads to) an attribute; a
        // `.name(` is a method call and ends it.
        while let Some(seg) = self.next_segment() {
            let longer = format!("{path}.{seg}");
            if !is_known_prefix(&longer) {
                break;
            }
            self.bump();
            end = self.bump_end();
            path = longer;
        }
        if let Some(&(_, map)) = MAPS.iter().find(|(n, _)| *n == path) {
            return self.map_entry(map, &path, offset);
        }
        if let Some(&(_, a)) = ATTRIBUTES.iter().find(|(n, _)| *n == path) {
            return Ok(Expr::Attr(a));
        }
        // Name the whole misspelt attribute (`request.hots`), not just its known prefix.
        if let Some(seg) = self.next_segment() {
            path = format!("{path}.{seg}");
            self.bump();
            end = self.bump_end();
        }
        let names: Vec<&str> = ATTRIBUTES
            .iter()
            .map(|(n, _)| *n)
            .chain(MAPS.iter().map(|(n, _)| *n))
            .collect();
        let mut e = self.error_at(offset, end - offset, format!("unknown attribute `{path}`"));
        e.hint = Some(match suggest(&path, &names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "attributes are request.*, response.*, source.*, destination.*, connection.*, upstream.*, xds.* and the peer label maps".to_string(),
        });
        e.unknown_attribute = true;
        Err(e)
    }

    /// The identifier after a `.`, unless it is a method call.
    fn next_segment(&self) -> Option<String> {
        match (self.peek(), self.peek_at(1), self.peek_at(2)) {
            (Tok::Punct("."), Tok::Ident(seg), next) if *next != Tok::Punct("(") => {
                Some(seg.clone())
            }
            _ => None,
        }
    }

    /// Consumes a token, returning the offset after it.
    fn bump_end(&mut self) -> usize {
        let t = self.bump();
        t.offset + t.len
    }

    fn map_entry(
        &mut self,
        map: MapAttribute,
        path: &str,
        offset: usize,
    ) -> Result<Expr, ExprError> {
        if self.eat("[") {
            let t = self.bump();
            let (k_off, k_len) = (t.offset, t.len);
            let Tok::Str(key) = t.tok.clone() else {
                return Err(self
                    .error_at(
                        k_off,
                        k_len.max(1),
                        format!("{path}[...] takes a quoted key"),
                    )
                    .with_hint(format!("e.g. {path}['x-user']")));
            };
            self.expect("]")?;
            return Ok(Expr::Index(map, normalize_key(map, key)));
        }
        // `request.headers.x_user` (field selection, as in `has(request.headers.x)`).
        if matches!(self.peek(), Tok::Punct("."))
            && matches!(self.peek_at(1), Tok::Ident(_))
            && !matches!(self.peek_at(2), Tok::Punct("("))
        {
            self.bump();
            let Tok::Ident(key) = self.bump().tok.clone() else {
                unreachable!("checked above")
            };
            return Ok(Expr::Index(map, normalize_key(map, key)));
        }
        Err(self
            .error_at(
                offset,
                path.len(),
                format!("`{path}` is a map; index it with a key"),
            )
            .with_hint(format!("e.g. {path}['x-user']")))
    }
}

/// Whether `path` is an attribute or map name, or the start of one.
fn is_known_prefix(path: &str) -> bool {
    ATTRIBUTES
        .iter()
        .map(|(n, _)| *n)
        .chain(MAPS.iter().map(|(n, _)| *n))
        .any(|n| n == path || (n.starts_with(path) && n.as_bytes().get(path.len()) == Some(&b'.')))
}

/// Header names are case-insensitive: stored lower-case. Label keys are kept as written.
fn normalize_key(map: MapAttribute, key: String) -> String {
    match map {
        MapAttribute::RequestHeaders
        | MapAttribute::ResponseHeaders
        | MapAttribute::ResponseTrailers => key.to_ascii_lowercase(),
        _ => key,
    }
}
