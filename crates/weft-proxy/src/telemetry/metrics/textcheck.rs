//! A strict reader of OpenMetrics text (the subset a scraper relies on), for tests: every
//! line parses, every sample belongs to the family its `# TYPE` declared, families are
//! contiguous and unique, no series appears twice, histograms are well formed, and the
//! text ends with `# EOF`.

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type.
    pub families: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples named `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The one sample named `name` with these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels).as_slice() {
            [one] => one.value,
            other => panic!("{} samples {name}{labels:?}: {other:?}", other.len()),
        }
    }
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with `# EOF\\n`")?;
    let mut out = Exposition::default();
    let mut current: Option<(String, String)> = None;
    let mut helped = HashSet::new();
    let mut series = HashSet::new();
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest
                .split_once(' ')
                .ok_or_else(|| at("bad comment".into()))?;
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            check_name(name).map_err(at)?;
            match keyword {
                "TYPE" => {
                    if !matches!(
                        arg,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "gaugehistogram"
                            | "stateset"
                            | "info"
                            | "summary"
                            | "unknown"
                    ) {
                        return Err(at(format!("unknown type {arg}")));
                    }
                    if out.families.insert(name.into(), arg.into()).is_some() {
                        return Err(at(format!("family {name} declared twice")));
                    }
                    current = Some((name.into(), arg.into()));
                }
                "HELP" => {
                    if !helped.insert(name.to_string()) {
                        return Err(at("second HELP".into()));
                    }
                }
                "UNIT" => {}
                _ => return Err(at("unknown comment".into())),
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let Some((family, ty)) = &current else {
            return Err(at("sample before any TYPE".into()));
        };
        let suffix = sample
            .name
            .strip_prefix(family.as_str())
            .ok_or_else(|| at(format!("sample outside its family {family}")))?;
        let allowed: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" => &[""],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[
                "", "_sum", "_count", "_bucket", "_created", "_gcount", "_gsum",
            ],
        };
        if !allowed.contains(&suffix) {
            return Err(at(format!(
                "{ty} {family} cannot have a sample {}",
                sample.name
            )));
        }
        if ty == "counter" && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("negative counter".into()));
        }
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        out.samples.push(sample);
    }
    check_histograms(&out)?;
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let start = match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next().expect("peeked");
                    rest = &inner[i + 1..];
                    break;
                }
                Some((i, _)) => *i,
                None => return Err("unterminated label set".into()),
            };
            let eq = inner[start..].find('=').ok_or("label without =")? + start;
            let key = &inner[start..eq];
            let mut kb = key.bytes();
            if !(kb
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && kb.all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            {
                return Err(format!("invalid label name {key:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some('\n') | None => return Err("unterminated label value".into()),
                    Some(c) => value.push(c),
                }
            }
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parts.next().unwrap_or("");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Buckets sorted by `le`, cumulative, ending at `+Inf` equal to `_count`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, ty) in &e.families {
        if ty != "histogram" {
            continue;
        }
        let bucket = format!("{family}_bucket");
        let mut by_series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in e.samples.iter().filter(|s| s.name == bucket) {
            let mut labels = s.labels.clone();
            let le = labels.remove("le").ok_or("a bucket without le")?;
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| format!("bad le {le}"))?
            };
            by_series.entry(labels).or_default().push((le, s.value));
        }
        for (labels, buckets) in by_series {
            let ordered = buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if !ordered || last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: bad buckets {buckets:?}"));
            }
            let count = e
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .ok_or_else(|| format!("{family}{labels:?}: no _count"))?;
            if count.value != last.1 {
                return Err(format!("{family}{labels:?}: _count differs from +Inf"));
            }
        }
    }
    Ok(())
}

#[test]
fn rejects_what_a_scraper_would() {
    assert!(parse("# TYPE a counter\na_total 1\n# EOF\n").is_ok());
    assert!(parse("# TYPE a counter\na_total 1\n").is_err(), "no EOF");
    assert!(parse("a 1\n# EOF\n").is_err(), "no TYPE");
    assert!(
        parse("# TYPE a counter\na 1\n# EOF\n").is_err(),
        "counter sample name"
    );
    assert!(parse("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n# EOF\n").is_err());
    assert!(parse("# TYPE a gauge\na{x=1} 1\n# EOF\n").is_err());
    assert!(parse("# TYPE a gauge\na 1\n# TYPE a gauge\n# EOF\n").is_err());
    let h = "# TYPE h histogram\nh_sum 3\nh_count 2\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
    assert!(parse(h).is_ok());
    assert!(parse(&h.replace("h_count 2", "h_count 3")).is_err());
    let e = parse("# TYPE a gauge\na{x=\"q\\\"\\\\\",y=\"\"} 1.5\n# EOF\n").unwrap();
    assert_eq!(e.value("a", &[("x", "q\"\\"), ("y", "")]), 1.5);
}
