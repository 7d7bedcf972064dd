//! Access logs: one [`Sink`] per configured log, rendering Envoy's format language for
//! each finished request (and each closed TCP connection) that passes its filter, and
//! handing the line to a writer (stdout, stderr, a file) or an OTLP exporter.

pub mod format;
pub mod otlp;
mod time;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_api::{AccessLog, Expr, LogFormat, LogOperator, LogPart, LogSink, Node, ReporterMode};

use self::format::Formatter;
use self::otlp::{ExportSettings, OtlpLogs};
use self::writer::{LineWriter, Output};
use super::expr::{self, Exchange};
use super::{HttpRecord, Sink, TcpEvent, TcpRecord};

/// Counters of every access log of the process (they outlive config changes).
#[derive(Debug, Default)]
pub struct LogStats {
    /// Entries written or exported.
    pub written: AtomicU64,
    /// Entries lost: queue full, write or export failed.
    pub dropped: AtomicU64,
    /// OTLP export requests that failed.
    pub export_failures: AtomicU64,
}

impl LogStats {
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn export_failures(&self) -> u64 {
        self.export_failures.load(Ordering::Relaxed)
    }
}

/// Where a log's rendered entries go.
enum Destination {
    Lines(LineWriter),
    Otlp(OtlpLogs),
}

/// One configured access log.
pub struct AccessLogSink {
    formatter: Formatter,
    filter: Option<Expr>,
    mode: ReporterMode,
    dest: Destination,
}

impl AccessLogSink {
    fn passes(&self, client_side: bool, x: Exchange<'_, '_>) -> bool {
        self.mode.covers(client_side)
            && self
                .filter
                .as_ref()
                .is_none_or(|f| expr::eval(f, &x).truthy())
    }
}

impl Sink for AccessLogSink {
    fn http(&self, rec: &HttpRecord<'_>) {
        if !self.passes(rec.client_side, Exchange::Http(rec)) {
            return;
        }
        let rendered = self.formatter.http(rec);
        match &self.dest {
            Destination::Lines(w) => w.offer(rendered.line),
            Destination::Otlp(o) => o.offer(otlp::record(&rendered, rec.start, rec.span)),
        }
    }

    fn tcp(&self, rec: &TcpRecord<'_>) {
        // Envoy logs a TCP proxy connection once, when it closes.
        if rec.event != TcpEvent::Closed || !self.passes(rec.client_side, Exchange::Tcp(rec)) {
            return;
        }
        let rendered = self.formatter.tcp(rec);
        match &self.dest {
            Destination::Lines(w) => w.offer(rendered.line),
            Destination::Otlp(o) => o.offer(otlp::record(&rendered, rec.start, None)),
        }
    }
}

/// The sinks for `logs`. A log whose output cannot be set up (no tokio runtime for
/// OTLP, no thread) is skipped with a warning.
pub fn build(logs: &[AccessLog], node: &Node, stats: &Arc<LogStats>) -> Vec<Arc<dyn Sink>> {
    let hostname = hostname();
    let mut out: Vec<Arc<dyn Sink>> = Vec::with_capacity(logs.len());
    for log in logs {
        let dest = match &log.sink {
            LogSink::Otlp {
                endpoint,
                service_name,
            } => {
                let resource = otlp::resource(service_name, &node.id, &node.namespace);
                OtlpLogs::start(endpoint, resource, ExportSettings::default(), stats.clone())
                    .map(Destination::Otlp)
            }
            other => Output::of(other)
                .and_then(|o| LineWriter::start(o, writer::QUEUE_LINES, stats.clone()).ok())
                .map(Destination::Lines),
        };
        let Some(dest) = dest else {
            tracing::warn!(provider = %log.provider, "access log output could not be started; this log is off");
            continue;
        };
        out.push(Arc::new(AccessLogSink {
            formatter: Formatter::new(&log.format, &hostname),
            filter: log.filter.clone(),
            mode: log.mode,
            dest,
        }));
    }
    out
}

/// The machine's host name (`%HOSTNAME%`).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "-".to_string())
}

/// Whether any log reads request headers at the end of the exchange, so the request
/// path must keep a copy of them. The request line (`:method`, `:path`, `:authority`,
/// `:scheme`) and the request id are recorded anyway.
pub fn reads_request_headers(logs: &[AccessLog]) -> bool {
    logs.iter().any(|log| {
        log.filter.as_ref().is_some_and(expr_reads_headers)
            || match &log.format {
                LogFormat::Text(parts) => parts_read_headers(parts),
                LogFormat::Json(fields) => fields.iter().any(|(_, p)| parts_read_headers(p)),
            }
    })
}

fn parts_read_headers(parts: &[LogPart]) -> bool {
    let recorded = |h: &str| {
        matches!(
            h,
            ":method" | ":path" | ":authority" | ":scheme" | "host" | "x-request-id"
        )
    };
    parts.iter().any(|p| match p {
        LogPart::Op {
            op: LogOperator::Req(h, alt) | LogOperator::ReqWithoutQuery(h, alt),
            ..
        } => !recorded(h) || alt.as_deref().is_some_and(|a| !recorded(a)),
        LogPart::Op {
            op: LogOperator::Cel(e),
            ..
        } => expr_reads_headers(e),
        _ => false,
    })
}

/// Whether an expression reads request headers (user agent, referer and any
/// `request.headers[...]`).
pub fn expr_reads_headers(e: &Expr) -> bool {
    use weft_api::{Attribute as A, MapAttribute as M};
    match e {
        Expr::Attr(a) => matches!(
            a,
            A::RequestUserAgent | A::RequestReferer | A::RequestTotalSize
        ),
        Expr::Index(m, _) => *m == M::RequestHeaders,
        Expr::String(_) | Expr::Int(_) | Expr::Bool(_) => false,
        Expr::Has(x) | Expr::Not(x) | Expr::ToString(x) | Expr::ToInt(x) => expr_reads_headers(x),
        Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Compare(a, _, b)
        | Expr::Call(a, _, b)
        | Expr::Add(a, b) => expr_reads_headers(a) || expr_reads_headers(b),
        Expr::Cond(c, a, b) => {
            expr_reads_headers(c) || expr_reads_headers(a) || expr_reads_headers(b)
        }
    }
}

#[cfg(test)]
mod tests;
