//! Istio's resource annotations (the facts of istio/api `annotation/annotations.yaml`):
//! which kinds each may be set on, its feature status, whether it is deprecated, and how its
//! value is checked.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Any,
    Pod,
    Service,
    Ingress,
    AuthorizationPolicy,
    WorkloadEntry,
    Gateway,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Any => "Any",
            Target::Pod => "Pod",
            Target::Service => "Service",
            Target::Ingress => "Ingress",
            Target::AuthorizationPolicy => "AuthorizationPolicy",
            Target::WorkloadEntry => "WorkloadEntry",
            Target::Gateway => "Gateway",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Alpha,
    Beta,
    Stable,
}

/// How an annotation's value is checked (IST0125 when it fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Any,
    Bool,
    UInt32,
    Port,
    InterceptionMode,
    /// Comma-separated CIDRs, or `*`.
    IpRanges,
    /// Comma-separated ports, or `*`.
    PortsOrStar,
    /// Comma-separated ports.
    Ports,
    /// A ProxyConfig document in YAML or JSON.
    ProxyConfig,
}

#[derive(Debug, Clone, Copy)]
pub struct AnnotationDef {
    pub name: &'static str,
    pub status: Status,
    pub targets: &'static [Target],
    /// Deprecated; the text says what replaces it (may be empty).
    pub deprecated: Option<&'static str>,
    /// Written by Istio itself (injector, CNI, controllers), never by users: not reported.
    pub set_by_istio: bool,
    pub check: Check,
}

const fn def(
    name: &'static str,
    status: Status,
    targets: &'static [Target],
    check: Check,
) -> AnnotationDef {
    AnnotationDef {
        name,
        status,
        targets,
        deprecated: None,
        set_by_istio: false,
        check,
    }
}

const fn deprecated(
    name: &'static str,
    status: Status,
    targets: &'static [Target],
    instead: &'static str,
) -> AnnotationDef {
    AnnotationDef {
        name,
        status,
        targets,
        deprecated: Some(instead),
        set_by_istio: false,
        check: Check::Any,
    }
}

const fn internal(name: &'static str, targets: &'static [Target]) -> AnnotationDef {
    AnnotationDef {
        name,
        status: Status::Alpha,
        targets,
        deprecated: None,
        set_by_istio: true,
        check: Check::Any,
    }
}

use Check as C;
use Status::{Alpha, Beta, Stable};
const POD: &[Target] = &[Target::Pod];
const SVC: &[Target] = &[Target::Service];
const ANY: &[Target] = &[Target::Any];
const GW: &[Target] = &[Target::Gateway];
const WE: &[Target] = &[Target::WorkloadEntry];

/// Istio's well-known resource annotations.
pub const ANNOTATIONS: &[AnnotationDef] = &[
    deprecated("alpha.istio.io/canonical-serviceaccounts", Alpha, SVC, ""),
    deprecated("alpha.istio.io/kubernetes-serviceaccounts", Alpha, SVC, ""),
    deprecated("alpha.istio.io/identity", Alpha, POD, ""),
    internal("ambient.istio.io/redirection", POD),
    def(
        "ambient.istio.io/bypass-inbound-capture",
        Alpha,
        POD,
        C::Bool,
    ),
    def("galley.istio.io/analyze-suppress", Alpha, ANY, C::Any),
    internal("gateway.istio.io/controller-version", ANY),
    def("gateway.istio.io/service-account", Alpha, GW, C::Any),
    def("gateway.istio.io/name-override", Alpha, GW, C::Any),
    def("inject.istio.io/templates", Alpha, POD, C::Any),
    internal("install.operator.istio.io/chart-owner", ANY),
    internal("install.operator.istio.io/owner-generation", ANY),
    internal("install.operator.istio.io/version", ANY),
    def(
        "istio.io/dry-run",
        Alpha,
        &[Target::AuthorizationPolicy],
        C::Bool,
    ),
    internal("istio.io/rev", POD),
    internal("istio.io/autoRegistrationGroup", WE),
    internal("istio.io/workloadController", WE),
    internal("istio.io/connectedAt", WE),
    internal("istio.io/disconnectedAt", WE),
    def("istio.io/reroute-virtual-interfaces", Alpha, POD, C::Any),
    def(
        "kubernetes.io/ingress.class",
        Stable,
        &[Target::Ingress],
        C::Any,
    ),
    def("networking.istio.io/exportTo", Alpha, SVC, C::Any),
    def(
        "networking.istio.io/traffic-distribution",
        Alpha,
        SVC,
        C::Any,
    ),
    def("networking.istio.io/address-type", Alpha, GW, C::Any),
    def("networking.istio.io/service-type", Alpha, GW, C::Any),
    def("prometheus.istio.io/merge-metrics", Alpha, POD, C::Bool),
    def("proxy.istio.io/config", Beta, POD, C::ProxyConfig),
    internal("proxy.istio.io/overrides", POD),
    def(
        "readiness.status.sidecar.istio.io/applicationPorts",
        Alpha,
        POD,
        C::Any,
    ),
    def(
        "readiness.status.sidecar.istio.io/failureThreshold",
        Alpha,
        POD,
        C::UInt32,
    ),
    def(
        "readiness.status.sidecar.istio.io/initialDelaySeconds",
        Alpha,
        POD,
        C::UInt32,
    ),
    def(
        "readiness.status.sidecar.istio.io/periodSeconds",
        Alpha,
        POD,
        C::UInt32,
    ),
    def("sidecar.istio.io/agentLogLevel", Alpha, POD, C::Any),
    def("sidecar.istio.io/bootstrapOverride", Alpha, POD, C::Any),
    def("sidecar.istio.io/componentLogLevel", Alpha, POD, C::Any),
    deprecated("sidecar.istio.io/controlPlaneAuthPolicy", Alpha, POD, ""),
    deprecated(
        "sidecar.istio.io/discoveryAddress",
        Alpha,
        POD,
        "the discoveryAddress field of the proxy.istio.io/config annotation",
    ),
    def("sidecar.istio.io/enableCoreDump", Alpha, POD, C::Bool),
    def("sidecar.istio.io/extraStatTags", Alpha, POD, C::Any),
    AnnotationDef {
        name: "sidecar.istio.io/inject",
        status: Beta,
        targets: POD,
        deprecated: Some("the \"sidecar.istio.io/inject\" label"),
        set_by_istio: false,
        check: C::Bool,
    },
    def(
        "sidecar.istio.io/interceptionMode",
        Alpha,
        POD,
        C::InterceptionMode,
    ),
    def("sidecar.istio.io/logLevel", Alpha, POD, C::Any),
    def("sidecar.istio.io/nativeSidecar", Alpha, POD, C::Bool),
    def("sidecar.istio.io/proxyCPU", Alpha, POD, C::Any),
    def("sidecar.istio.io/proxyCPULimit", Alpha, POD, C::Any),
    def("sidecar.istio.io/proxyImage", Alpha, POD, C::Any),
    def("sidecar.istio.io/proxyImageType", Alpha, POD, C::Any),
    def("sidecar.istio.io/proxyMemory", Alpha, POD, C::Any),
    def("sidecar.istio.io/proxyMemoryLimit", Alpha, POD, C::Any),
    def(
        "sidecar.istio.io/rewriteAppHTTPProbers",
        Alpha,
        POD,
        C::Bool,
    ),
    def("sidecar.istio.io/statsCompression", Alpha, POD, C::Any),
    def("sidecar.istio.io/statsHistogramBuckets", Alpha, POD, C::Any),
    deprecated(
        "sidecar.istio.io/statsInclusionPrefixes",
        Alpha,
        POD,
        "the proxyStatsMatcher field of the proxy.istio.io/config annotation",
    ),
    deprecated(
        "sidecar.istio.io/statsInclusionRegexps",
        Alpha,
        POD,
        "the proxyStatsMatcher field of the proxy.istio.io/config annotation",
    ),
    deprecated(
        "sidecar.istio.io/statsInclusionSuffixes",
        Alpha,
        POD,
        "the proxyStatsMatcher field of the proxy.istio.io/config annotation",
    ),
    internal("sidecar.istio.io/status", POD),
    def("sidecar.istio.io/userVolume", Alpha, POD, C::Any),
    def("sidecar.istio.io/userVolumeMount", Alpha, POD, C::Any),
    def("status.sidecar.istio.io/port", Alpha, POD, C::Port),
    def("topology.istio.io/controlPlaneClusters", Alpha, ANY, C::Any),
    def(
        "traffic.sidecar.istio.io/excludeInboundPorts",
        Alpha,
        POD,
        C::Ports,
    ),
    def(
        "traffic.sidecar.istio.io/excludeInterfaces",
        Alpha,
        POD,
        C::Any,
    ),
    def(
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        Alpha,
        POD,
        C::IpRanges,
    ),
    def(
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        Alpha,
        POD,
        C::Ports,
    ),
    def(
        "traffic.sidecar.istio.io/includeInboundPorts",
        Alpha,
        POD,
        C::PortsOrStar,
    ),
    def(
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        Alpha,
        POD,
        C::IpRanges,
    ),
    def(
        "traffic.sidecar.istio.io/includeOutboundPorts",
        Alpha,
        POD,
        C::Ports,
    ),
    AnnotationDef {
        name: "traffic.sidecar.istio.io/kubevirtInterfaces",
        status: Alpha,
        targets: POD,
        deprecated: Some("the \"istio.io/reroute-virtual-interfaces\" annotation"),
        set_by_istio: false,
        check: C::Any,
    },
];

/// Annotations the injector (or istio-cni) sets on every pod, not alpha-reported on pods
/// that use istio-cni.
pub const CNI_DEFAULTS: &[&str] = &[
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
];

pub fn lookup(name: &str) -> Option<&'static AnnotationDef> {
    ANNOTATIONS.iter().find(|a| a.name == name)
}

/// Whether an annotation is in Istio's namespace (any `*istio.io/` prefix), or the one
/// Kubernetes annotation Istio documents.
pub fn is_istio_annotation(name: &str) -> bool {
    if name == "kubernetes.io/ingress.class" {
        return true;
    }
    name.split_once('/')
        .is_some_and(|(prefix, _)| prefix.ends_with("istio.io"))
}

/// Check a value; the error says what was expected.
pub fn check_value(check: Check, value: &str) -> Result<(), String> {
    let v = value.trim();
    match check {
        Check::Any => Ok(()),
        Check::Bool => match v {
            "true" | "false" | "True" | "False" | "TRUE" | "FALSE" | "1" | "0" | "t" | "f"
            | "T" | "F" => Ok(()),
            _ => Err(format!(
                "\"{value}\" is not a boolean (use \"true\" or \"false\")"
            )),
        },
        Check::UInt32 => v
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| format!("\"{value}\" is not a non-negative integer")),
        Check::Port => match v.parse::<u32>() {
            Ok(p) if p <= 65535 => Ok(()),
            _ => Err(format!("\"{value}\" is not a port number (0-65535)")),
        },
        Check::InterceptionMode => match v {
            "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
            _ => Err(format!(
                "\"{value}\" is not an interception mode (REDIRECT, TPROXY or NONE)"
            )),
        },
        Check::IpRanges => {
            if v == "*" || v.is_empty() {
                return Ok(());
            }
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if !is_cidr(part) {
                    return Err(format!(
                        "\"{part}\" is not an IP range in CIDR form (e.g. 10.0.0.0/8)"
                    ));
                }
            }
            Ok(())
        }
        Check::PortsOrStar | Check::Ports => {
            if v.is_empty() || (check == Check::PortsOrStar && v == "*") {
                return Ok(());
            }
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part.parse::<u32>() {
                    Ok(p) if (1..=65535).contains(&p) => {}
                    _ => return Err(format!("\"{part}\" is not a port number (1-65535)")),
                }
            }
            Ok(())
        }
        Check::ProxyConfig => {
            let file = std::sync::Arc::new(crate::source::SourceFile {
                name: "proxy.istio.io/config".to_string(),
                text: value.to_string(),
            });
            match crate::yaml::parse_documents(&file) {
                Ok(docs) => match docs.first().map(|d| &d.value) {
                    None | Some(crate::yaml::Value::Map(_)) => Ok(()),
                    Some(_) => {
                        Err("the value must be a ProxyConfig map in YAML or JSON".to_string())
                    }
                },
                Err(e) => Err(format!("the value is not valid YAML/JSON: {e}")),
            }
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.is_none_or(|l| l.parse::<u32>().is_ok_and(|l| l <= max))
}
