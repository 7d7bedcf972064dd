//! A reader for the Prometheus text exposition format (0.0.4) and OpenMetrics text, as a
//! proxy's `/stats/prometheus` serves it.
//!
//! Written here rather than taken from a crate: `prometheus-client` only encodes, and the
//! parsers on crates.io either pull in regex and chrono for what is a line format or do not
//! understand OpenMetrics (`# EOF`, exemplars after ` # `). Only samples are returned: the
//! dashboard knows the metrics it wants by name, so `# TYPE`/`# HELP`/`# UNIT` are skipped.

/// One sample line: `name{labels} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// In the order written; few enough that a linear search beats a map.
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// The label's value; Istio writes `unknown` for a missing one, and so does this.
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("unknown", |(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

/// Every sample in `text`. A malformed line is an error naming it: a proxy that writes one
/// has a bug worth seeing rather than a graph silently missing an edge.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            // Comments, HELP/TYPE/UNIT metadata and OpenMetrics' final `# EOF`.
            continue;
        }
        let sample = parse_line(line).map_err(|reason| ParseError {
            line: i + 1,
            reason,
        })?;
        out.push(sample);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or_else(|| format!("no value in `{line}`"))?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, tail) = parse_labels(after)?;
        labels = parsed;
        rest = tail;
    }
    // OpenMetrics puts an exemplar after ` # `; the value and timestamp come first.
    let rest = rest.split(" # ").next().unwrap_or_default();
    let value = rest
        .split_ascii_whitespace()
        .next()
        .ok_or_else(|| format!("no value for `{name}`"))?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value: parse_value(value)?,
    })
}

/// Labels up to and including the closing brace; returns them and what follows.
type Labels = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without `=`")?;
        let key = s[..eq].trim();
        if key.is_empty() {
            return Err("empty label name".into());
        }
        // Prometheus label names are `[a-zA-Z_][a-zA-Z0-9_]*`; anything looser lets a stray
        // `,` or control character become part of a name (`{a="1",\r,b="2"}`).
        if !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(format!("bad label name `{key}`"));
        }
        let after = s[eq + 1..].trim_start();
        let body = after
            .strip_prefix('"')
            .ok_or_else(|| format!("label `{key}`: value not quoted"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label `{key}`: unterminated escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("label `{key}`: unterminated value")),
            }
        };
        labels.push((key.to_owned(), value));
        s = &body[end + 1..];
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_text() {
        let text = "# HELP istio_requests_total Total requests.\n\
                    # TYPE istio_requests_total counter\n\
                    istio_requests_total{reporter=\"source\",response_code=\"200\"} 12 1700000000000\n\
                    istio_request_duration_milliseconds_bucket{le=\"+Inf\"} 3\n\
                    up 1\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "istio_requests_total");
        assert_eq!(samples[0].label("reporter"), "source");
        assert_eq!(samples[0].label("response_code"), "200");
        assert_eq!(samples[0].label("missing"), "unknown");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1].label("le"), "+Inf");
        assert_eq!(samples[2].labels, Vec::new());
        assert_eq!(samples[2].value, 1.0);
    }

    #[test]
    fn reads_openmetrics_text_with_exemplars_and_eof() {
        let text = "# TYPE istio_requests counter\n\
                    istio_requests_total{a=\"x\"} 5.0 # {trace_id=\"abc\"} 1.0 1700000000.1\n\
                    istio_requests_created{a=\"x\"} 1700000000.0\n\
                    # TYPE d histogram\n\
                    d_bucket{le=\"0.5\"} 1\n\
                    d_sum 2.5e-1\n\
                    # EOF\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].value, 5.0);
        assert_eq!(samples[3].value, 0.25);
    }

    #[test]
    fn unescapes_label_values() {
        let text = "m{path=\"/a\\\"b\\\\c\\nd\",empty=\"\",comma=\"x,y}\",} 1\n";
        let s = &parse(text).unwrap()[0];
        assert_eq!(s.label("path"), "/a\"b\\c\nd");
        assert_eq!(s.label("empty"), "");
        assert_eq!(s.label("comma"), "x,y}");
    }

    #[test]
    fn special_values() {
        let s = parse("a +Inf\nb -Inf\nc NaN\n").unwrap();
        assert_eq!(s[0].value, f64::INFINITY);
        assert_eq!(s[1].value, f64::NEG_INFINITY);
        assert!(s[2].value.is_nan());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        let e = parse("ok 1\nbad{a=\"x} 1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("unterminated"), "{e}");
        assert!(parse("m{a=x} 1").is_err());
        assert!(parse("m{a=\"x\"}").is_err());
        assert!(parse("m one").is_err());
    }

    /// Found by the `prom_text` fuzz target (fuzz/regressions/prom_text/): after a `\r`,
    /// a `,` used to become part of the next label's name.
    #[test]
    fn label_names_are_prometheus_names() {
        let e = parse("m{a=\"1\",\r,b=\"2\"} 1\n").unwrap_err();
        assert!(e.reason.contains("bad label name `,b`"), "{e}");
        assert!(parse("m{a-b=\"1\"} 1").is_err());
        assert!(parse("m{\"a\"=\"1\"} 1").is_err());
        let ok = &parse("m{ a = \"1\" ,b_2=\"2\"} 1").unwrap()[0];
        assert_eq!(
            ok.labels,
            [("a".into(), "1".into()), ("b_2".into(), "2".into())]
        );
    }
}
