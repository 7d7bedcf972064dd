//! What the generated queries need to know about the user's Prometheus (job and label names),
//! and the few PromQL shapes every dashboard repeats.
//!
//! Queries are written out with `format!` at their use site so that a reader sees the PromQL;
//! only the selector text (`metric{matchers}`) and the histogram quantile shape are built here.

/// Grafana's rate window: at least four scrape intervals, so `rate()` always has two samples.
pub const RATE: &str = "$__rate_interval";

/// Job and label names of the user's scrape config. Defaults match `docs/monitoring.md`.
#[derive(Clone, Debug)]
pub struct Scrape {
    /// `job` of the proxies' admin endpoint (`/stats/prometheus`).
    pub proxy_job: String,
    /// `job` of the control plane's `/metrics`.
    pub control_job: String,
    /// Target label carrying a proxy's namespace (set by the scrape config).
    pub namespace_label: String,
    /// Target label carrying a proxy's workload name (set by the scrape config).
    pub workload_label: String,
    /// RE2 regex (anchored, as Prometheus anchors `=~`) that matches gateway workload names.
    pub gateway_workloads: String,
}

impl Scrape {
    /// `job="<proxy job>"`.
    pub fn proxy(&self) -> String {
        format!("job={}", quote(&self.proxy_job))
    }

    /// `job="<control job>"`.
    pub fn control(&self) -> String {
        format!("job={}", quote(&self.control_job))
    }
}

/// A PromQL string literal: double quotes, with `\` and `"` escaped (PromQL strings follow
/// Go's escaping rules).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `metric{m1, m2}`; `metric` alone when there are no matchers.
pub fn sel(metric: &str, matchers: &[&str]) -> String {
    let matchers: Vec<&str> = matchers.iter().copied().filter(|m| !m.is_empty()).collect();
    if matchers.is_empty() {
        metric.to_string()
    } else {
        format!("{metric}{{{}}}", matchers.join(", "))
    }
}

/// `histogram_quantile(q, sum by (le, <by>) (rate(<histogram>_bucket{...}[window])))`.
pub fn quantile(q: f64, histogram: &str, matchers: &[&str], by: &str, window: &str) -> String {
    let buckets = sel(&format!("{histogram}_bucket"), matchers);
    let by = if by.is_empty() {
        "le".to_string()
    } else {
        format!("le, {by}")
    };
    format!("histogram_quantile({q}, sum by ({by}) (rate({buckets}[{window}])))")
}

/// Validates a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`) given on the command line.
pub fn label_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_like_go() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("weft-proxy"), "\"weft-proxy\"");
    }

    #[test]
    fn selector_and_quantile() {
        assert_eq!(sel("up", &[]), "up");
        assert_eq!(
            sel("up", &["job=\"x\"", "", "a=~\"b\""]),
            "up{job=\"x\", a=~\"b\"}"
        );
        assert_eq!(
            quantile(0.99, "h", &["a=\"1\""], "svc", "5m"),
            "histogram_quantile(0.99, sum by (le, svc) (rate(h_bucket{a=\"1\"}[5m])))"
        );
        assert_eq!(
            quantile(0.5, "h", &[], "", "5m"),
            "histogram_quantile(0.5, sum by (le) (rate(h_bucket[5m])))"
        );
    }

    #[test]
    fn label_names() {
        assert!(label_name("namespace").is_ok());
        assert!(label_name("_k8s_ns1").is_ok());
        assert!(label_name("1ns").is_err());
        assert!(label_name("kubernetes-namespace").is_err());
        assert!(label_name("").is_err());
    }
}
