//! Loading configuration from files, directories and stdin into typed objects.
//!
//! Loading never stops at the first problem: every readable object is kept, and every
//! problem becomes a diagnostic with a position.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::de::{DeError, from_node};
use crate::diag::{Diagnostic, Severity, codes};
use crate::kinds::{self, Lookup};
use crate::object::{Object, ObjectMeta};
use crate::path::FieldPath;
use crate::source::{SourceFile, Span};
use crate::yaml::{self, Node, Value};

/// Files larger than this are refused: no mesh config is this big, and reading one would
/// only hide a mistake (a log or a binary in the config directory).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Everything loaded from a set of inputs.
#[derive(Debug, Default)]
pub struct Bundle {
    pub objects: Vec<Object>,
    pub diagnostics: Vec<Diagnostic>,
    /// Some input could not be read at all (missing path, unreadable or binary file).
    pub unreadable: bool,
    pub files: Vec<Arc<SourceFile>>,
    skipped: BTreeMap<(String, String), (usize, Span)>,
}

impl Bundle {
    /// Load every path: files, directories (recursively: `*.yaml`, `*.yml`, `*.json`) or `-`
    /// for stdin.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Bundle {
        let mut bundle = Bundle::default();
        for p in paths {
            bundle.add_path(p.as_ref());
        }
        bundle.finish()
    }

    /// Load one in-memory text (tests, fuzzing, stdin).
    pub fn load_str(name: &str, text: &str) -> Bundle {
        let mut bundle = Bundle::default();
        bundle.add_text(name, text.to_string());
        bundle.finish()
    }

    fn add_path(&mut self, path: &Path) {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            let limited = std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes);
            match limited {
                Ok(_) => self.add_bytes("<stdin>", bytes),
                Err(e) => self.unreadable("<stdin>", format!("cannot read stdin: {e}")),
            }
            return;
        }
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let name = path.display().to_string();
                self.unreadable(&name, format!("cannot read {name}: {e}"));
                return;
            }
        };
        if meta.is_dir() {
            let files = crate::tree::config_files(path, &mut |p, e| {
                self.unreadable(
                    &p.display().to_string(),
                    format!("cannot read {}: {e}", p.display()),
                )
            });
            for f in files {
                self.add_file(&f);
            }
        } else {
            self.add_file(path);
        }
    }

    fn add_file(&mut self, path: &Path) {
        let name = path.display().to_string();
        match fs::metadata(path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                let mib = m.len() / (1024 * 1024);
                self.unreadable(&name, format!("{name} is {mib} MiB, over weft's 16 MiB limit for a config file; split it or remove it from the config directory"));
                return;
            }
            Err(e) => {
                self.unreadable(&name, format!("cannot read {name}: {e}"));
                return;
            }
            Ok(_) => {}
        }
        match fs::read(path) {
            Ok(bytes) => self.add_bytes(&name, bytes),
            Err(e) => self.unreadable(&name, format!("cannot read {name}: {e}")),
        }
    }

    fn add_bytes(&mut self, name: &str, bytes: Vec<u8>) {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            self.unreadable(
                name,
                format!("{name} is over weft's 16 MiB limit for a config file"),
            );
            return;
        }
        if bytes.contains(&0) {
            self.unreadable(
                name,
                format!("{name} is a binary file (it contains NUL bytes), not YAML or JSON"),
            );
            return;
        }
        match String::from_utf8(bytes) {
            Ok(text) => self.add_text(name, text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                self.unreadable(
                    name,
                    format!(
                        "{name} is not UTF-8 text (invalid byte at offset {at}); save it as UTF-8"
                    ),
                );
            }
        }
    }

    fn add_text(&mut self, name: &str, text: String) {
        // A UTF-8 byte order mark is legal in YAML files saved by some editors.
        let text = text
            .strip_prefix('\u{feff}')
            .map(str::to_string)
            .unwrap_or(text);
        let file = Arc::new(SourceFile {
            name: name.to_string(),
            text,
        });
        self.files.push(file.clone());
        if file.text.trim().is_empty() {
            self.diagnostics.push(
                Diagnostic::warning(
                    codes::UNREADABLE,
                    format!("{name} is empty; nothing to load"),
                )
                .with_span(Span::whole_file(file)),
            );
            return;
        }
        let docs = match yaml::parse_documents(&file) {
            Ok(d) => d,
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::error(codes::SYNTAX, e.message)
                        .with_span(e.span)
                        .with_hint("fix the YAML syntax; the rest of this file was not loaded"),
                );
                return;
            }
        };
        for doc in docs {
            self.add_document(doc);
        }
    }

    fn add_document(&mut self, doc: Node) {
        if !matches!(doc.value, Value::Map(_)) {
            self.diagnostics.push(
                Diagnostic::error(
                    codes::SCHEMA,
                    format!(
                        "a document must be a map with apiVersion and kind, found {}",
                        doc.kind_name()
                    ),
                )
                .with_span(doc.span.clone()),
            );
            return;
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_string();
        let kind = doc
            .get("kind")
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_string();
        if kind.is_empty() || api_version.is_empty() {
            let missing = if kind.is_empty() {
                "kind"
            } else {
                "apiVersion"
            };
            self.diagnostics.push(
                Diagnostic::error(codes::SCHEMA, format!("document has no `{missing}`"))
                    .with_span(doc.span.clone())
                    .with_hint("every object needs `apiVersion:` and `kind:`, e.g. `apiVersion: networking.istio.io/v1` and `kind: VirtualService`"),
            );
            return;
        }
        if kind == "List" && api_version == "v1" {
            if let Some(Value::Seq(items)) = doc.get("items").map(|n| &n.value) {
                for item in items.clone() {
                    self.add_document(item);
                }
            }
            return;
        }
        let kind = match kinds::lookup(&api_version, &kind) {
            Lookup::Known(k) => k,
            Lookup::BadVersion(k) => {
                let span = doc
                    .get("apiVersion")
                    .map(|n| n.span.clone())
                    .unwrap_or(doc.span.clone());
                let accepted: Vec<String> = k
                    .versions()
                    .iter()
                    .map(|v| {
                        if k.group().is_empty() {
                            v.to_string()
                        } else {
                            format!("{}/{v}", k.group())
                        }
                    })
                    .collect();
                self.diagnostics.push(
                    Diagnostic::error(
                        codes::SCHEMA,
                        format!("{} does not exist in version `{api_version}`", k.name()),
                    )
                    .with_span(span)
                    .with_hint(format!("use one of: {}", accepted.join(", "))),
                );
                return;
            }
            Lookup::Unknown => {
                let at = doc.get("kind").map_or(doc.span.clone(), |n| n.span.clone());
                let entry = self.skipped.entry((api_version, kind)).or_insert((0, at));
                entry.0 += 1;
                return;
            }
        };
        let meta = match doc.get("metadata") {
            Some(m) => from_node::<ObjectMeta>(m, &FieldPath::root().key("metadata")),
            None => Ok(ObjectMeta::default()),
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                self.diagnostics
                    .push(schema_diagnostic(e, &doc, kind.name(), ""));
                return;
            }
        };
        if meta.name.is_empty() {
            self.diagnostics.push(
                Diagnostic::error(
                    codes::SCHEMA,
                    format!("{} has no `metadata.name`", kind.name()),
                )
                .with_span(doc.span.clone())
                .with_hint("add `metadata: {name: ...}`"),
            );
            return;
        }
        match kind.parse(&doc) {
            Ok(body) => self.objects.push(Object {
                api_version,
                kind,
                meta,
                body,
                node: Arc::new(doc),
            }),
            Err(e) => {
                let d = schema_diagnostic(e, &doc, kind.name(), &meta.name);
                let ns = meta.namespace.clone();
                let mut d = d;
                if let Some(r) = d.resource.as_mut() {
                    r.namespace = kind
                        .namespaced()
                        .then(|| ns.unwrap_or_else(|| crate::object::DEFAULT_NAMESPACE.into()));
                }
                self.diagnostics.push(d);
            }
        }
    }

    fn unreadable(&mut self, name: &str, message: String) {
        let _ = name;
        self.unreadable = true;
        self.diagnostics
            .push(Diagnostic::error(codes::UNREADABLE, message));
    }

    fn finish(mut self) -> Bundle {
        for ((api_version, kind), (count, span)) in std::mem::take(&mut self.skipped) {
            let what = if count == 1 {
                "object".to_string()
            } else {
                format!("{count} objects")
            };
            self.diagnostics.push(
                Diagnostic::info(
                    codes::SKIPPED_KIND,
                    format!(
                        "skipped {what} of kind {kind} ({api_version}): weft does not use this kind"
                    ),
                )
                .with_span(span),
            );
        }
        let mut seen: HashMap<(kinds::Kind, String, String), Span> = HashMap::new();
        let mut dups = Vec::new();
        for o in &self.objects {
            let key = (o.kind, o.namespace().to_string(), o.name().to_string());
            if let Some(first) = seen.get(&key) {
                let mut d = Diagnostic::error(
                    codes::DUPLICATE_OBJECT,
                    format!(
                        "{} is defined twice; the first definition is at {first}",
                        o.resource_ref()
                    ),
                )
                .with_span(o.span())
                .with_hint("remove or rename one of them");
                d.resource = Some(o.resource_ref());
                dups.push(d);
            } else {
                seen.insert(key, o.span());
            }
        }
        self.diagnostics.extend(dups);
        self
    }
}

/// Turn a schema error into an IST0106 diagnostic at the field responsible.
pub fn schema_diagnostic(e: DeError, doc: &Node, kind: &str, name: &str) -> Diagnostic {
    let span = e.span.clone().unwrap_or_else(|| doc.span.clone());
    let message = if e.path.is_root() {
        e.message
    } else {
        format!("{}: {}", e.path, e.message)
    };
    let mut d = Diagnostic::new(codes::SCHEMA, Severity::Error, message).with_span(span);
    d.hint = e.hint;
    d.field = (!e.path.is_root()).then_some(e.path);
    d.resource = Some(crate::diag::ResourceRef {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: None,
    });
    d
}
