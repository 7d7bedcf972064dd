//! Diagnostics: what weft reports about configuration, in one shape for every source
//! (loading, schema, validation, cross-resource analysis).

use std::fmt;

use serde::Serialize;

use crate::path::FieldPath;
use crate::source::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// The object a diagnostic is about, named as `istioctl analyze` does: `Kind name.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One finding. `code` is Istio's (`IST0101`) where the meaning is the same, weft's own
/// (`WEFT…`) otherwise; codes are stable and documented in docs/analyzer-codes.md.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    /// How to fix it, when weft can tell.
    pub hint: Option<String>,
    pub resource: Option<ResourceRef>,
    /// The field responsible, e.g. `spec.http[0].route[0].destination.host`.
    pub field: Option<FieldPath>,
    pub span: Option<Span>,
}

impl Diagnostic {
    pub fn new(code: &'static str, severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            message: message.into(),
            hint: None,
            resource: None,
            field: None,
            span: None,
        }
    }

    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, Severity::Error, message)
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, Severity::Warning, message)
    }

    pub fn info(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, Severity::Info, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_span(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.severity, self.code)?;
        if let Some(r) = &self.resource {
            write!(f, " ({r})")?;
        }
        write!(f, " {}", self.message)?;
        if let Some(span) = &self.span {
            write!(f, " at {span}")?;
        }
        Ok(())
    }
}

/// Codes weft uses outside Istio's analyzer catalogue.
pub mod codes {
    /// The file could not be read or parsed at all.
    pub const UNREADABLE: &str = "WEFT0001";
    /// YAML syntax error.
    pub const SYNTAX: &str = "WEFT0002";
    /// A document without `apiVersion`/`kind`, or of a kind weft does not know (reported once).
    pub const SKIPPED_KIND: &str = "WEFT0003";
    /// The same object (kind, namespace, name) defined twice.
    pub const DUPLICATE_OBJECT: &str = "WEFT0004";
    /// An EnvoyFilter patch weft does not run (weft runs only local rate limiting patches).
    pub const UNSUPPORTED_ENVOY_FILTER: &str = "WEFT0005";
    /// Istio's schema validation code; weft uses it for every schema and field error.
    pub const SCHEMA: &str = "IST0106";
    /// Istio's schema warning code.
    pub const SCHEMA_WARNING: &str = "IST0133";
}
