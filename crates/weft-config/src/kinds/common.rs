//! Value types shared by several kinds: durations, string matches, selectors, int-or-string.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as Istio and Kubernetes accept it: Go's `time.ParseDuration` format
/// (`10s`, `1.5s`, `100ms`, `1h30m`), which also covers protobuf's JSON form (`1.5s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub fn parse(s: &str) -> Result<Duration, String> {
        parse_go_duration(s).map(Duration)
    }

    pub fn as_std(self) -> StdDuration {
        self.0
    }
}

fn parse_go_duration(s: &str) -> Result<StdDuration, String> {
    let bad = || {
        format!(
            "invalid duration `{s}`: write a number with a unit (ns, us, ms, s, m, h), e.g. `10s` or `1.5s`"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if t.starts_with('-') {
        return Err(format!(
            "invalid duration `{s}`: durations cannot be negative"
        ));
    }
    if t == "0" {
        return Ok(StdDuration::ZERO);
    }
    let mut rest = t.strip_prefix('+').unwrap_or(t);
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration `{s}`: missing unit (ns, us, ms, s, m, h)"))?;
        if num_end == 0 {
            return Err(bad());
        }
        let number = &rest[..num_end];
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "invalid duration `{s}`: unknown unit `{unit}` (use ns, us, ms, s, m or h)"
                ));
            }
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut value = whole.checked_mul(nanos_per).ok_or_else(bad)?;
        let mut scale = nanos_per;
        for d in frac.chars() {
            scale /= 10;
            value += u128::from(d.to_digit(10).ok_or_else(bad)?) * scale;
        }
        total_nanos = total_nanos.checked_add(value).ok_or_else(bad)?;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| bad())?;
    Ok(StdDuration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl serde::de::Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `10s` or `250ms`")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }

            // A bare number is the most common duration mistake: say which unit to add.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: a duration needs a unit; write `{v}s` (or ms, m, h)"
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: a duration needs a unit, e.g. `{}s`",
                    v.unsigned_abs()
                )))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: a duration needs a unit; write `{v}s`"
                )))
            }
        }

        d.deserialize_any(DurationVisitor)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) && d.as_secs() == 0 {
            write!(f, "{}ms", d.subsec_millis())
        } else {
            write!(f, "{}s", d.as_secs_f64())
        }
    }
}

/// Istio's StringMatch: exactly one of exact / prefix / regex. An empty map `{}` is allowed
/// in header matches, where it means "present".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    pub fn set_count(&self) -> usize {
        [&self.exact, &self.prefix, &self.regex]
            .iter()
            .filter(|v| v.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.set_count() == 0
    }
}

/// Kubernetes LabelSelector (`matchLabels` + `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Whether the selector selects an object with `labels`. An empty selector selects all.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let val = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => val.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => val.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

/// Istio's `selector: {matchLabels: …}` on security and telemetry kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadSelector {
    pub match_labels: BTreeMap<String, String>,
}

/// Istio's `workloadSelector: {labels: …}` on networking kinds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkingWorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

/// Whether every `selector` label is present with the same value in `labels`. An empty
/// selector selects everything.
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Istio's PolicyTargetReference (`targetRef` / `targetRefs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyTargetReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// Kubernetes IntOrString (`targetPort: 8080` or `targetPort: http`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

/// gRPC status names, indexed by their numeric code (`UNAVAILABLE` = 14).
pub const GRPC_STATUS_NAMES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A gRPC status given by name (any case) or number, as Istio's `grpcStatus` accepts it.
pub fn grpc_status_code(name: &str) -> Option<u32> {
    name.parse().ok().or_else(|| {
        GRPC_STATUS_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .map(|i| i as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ms = |s| Duration::parse(s).unwrap().0.as_millis();
        assert_eq!(ms("10s"), 10_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("100ms"), 100);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("0"), 0);
        assert_eq!(Duration::parse("0.001s").unwrap().0.as_micros(), 1_000);
        assert!(Duration::parse("10").unwrap_err().contains("missing unit"));
        assert!(
            Duration::parse("10x")
                .unwrap_err()
                .contains("unknown unit `x`")
        );
        assert!(Duration::parse("-1s").unwrap_err().contains("negative"));
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("s").is_err());
    }

    #[test]
    fn bare_numbers_get_a_unit_hint() {
        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n    timeout: 5\n",
        );
        let d = &b.diagnostics[0];
        assert_eq!(
            d.field.as_ref().unwrap().to_string(),
            "spec.http[0].timeout"
        );
        assert!(d.message.contains("write `5s`"), "{}", d.message);
        assert_eq!(d.span.as_ref().unwrap().start.line, 8);
    }

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "a".to_string())].into();
        let mut sel = LabelSelector::default();
        assert!(sel.matches(&labels));
        sel.match_labels.insert("app".into(), "b".into());
        assert!(!sel.matches(&labels));
    }
}
