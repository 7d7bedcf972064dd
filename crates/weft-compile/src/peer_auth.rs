//! PeerAuthentication: the mTLS mode a workload's inbound port accepts.
//!
//! Istio's composition (`ComposePeerAuthentication`): one policy per level, the oldest by
//! creation time (then namespace and name) where several compete —
//! - mesh: no selector, in the root namespace;
//! - namespace: no selector, in the workload's namespace (not the root);
//! - workload: a non-empty `selector.matchLabels` matching the workload, in its namespace
//!   (selector policies in the root namespace are ignored, as Istio's code does).
//!
//! Levels apply mesh → namespace → workload, each overriding the mode unless it is UNSET;
//! nothing set means PERMISSIVE. Then the workload policy's `portLevelMtls` entry for the
//! target port, if any, overrides the mode (UNSET there keeps the composed mode).

use std::collections::BTreeMap;

use weft_api::{InboundMtls, MtlsMode, Origin};
use weft_config::kinds::common::labels_match;
use weft_config::kinds::istio::{MeshConfig, MtlsMode as PeerMode, PeerAuthentication};
use weft_config::{Body, Object};

/// The policy chosen at one level, reduced to what composition reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub origin: Origin,
    pub mode: PeerMode,
    /// `portLevelMtls`, by target port (only read on the workload level).
    pub ports: Vec<(u16, PeerMode)>,
}

impl Level {
    fn of(o: &Object, pa: &PeerAuthentication) -> Level {
        Level {
            origin: Origin {
                kind: "PeerAuthentication".into(),
                namespace: o.namespace().into(),
                name: o.name().into(),
            },
            mode: pa.mtls.as_ref().map(|m| m.mode).unwrap_or_default(),
            ports: pa.port_modes(),
        }
    }
}

/// Compose the three levels for `port`: the precedence rule, separate from the lookup so
/// it can be tested on its own.
pub fn compose(
    mesh: Option<&Level>,
    namespace: Option<&Level>,
    workload: Option<&Level>,
    port: u16,
) -> InboundMtls {
    let mut out = InboundMtls {
        mode: MtlsMode::Permissive,
        origin: None,
    };
    for level in [mesh, namespace, workload].into_iter().flatten() {
        if let Some(mode) = api_mode(level.mode) {
            out = InboundMtls {
                mode,
                origin: Some(level.origin.clone()),
            };
        }
    }
    let port_mode = workload.and_then(|w| {
        w.ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, m)| (w, *m))
    });
    if let Some((w, m)) = port_mode
        && let Some(mode) = api_mode(m)
    {
        out = InboundMtls {
            mode,
            origin: Some(w.origin.clone()),
        };
    }
    out
}

fn api_mode(m: PeerMode) -> Option<MtlsMode> {
    match m {
        PeerMode::Unset => None,
        PeerMode::Disable => Some(MtlsMode::Disable),
        PeerMode::Permissive => Some(MtlsMode::Permissive),
        PeerMode::Strict => Some(MtlsMode::Strict),
    }
}

/// Every PeerAuthentication of the snapshot, oldest first.
pub struct PeerPolicies<'a> {
    policies: Vec<(&'a Object, &'a PeerAuthentication)>,
    root_ns: String,
}

impl<'a> PeerPolicies<'a> {
    #[cfg(test)]
    pub fn new(objects: &'a [Object], mesh: &MeshConfig) -> PeerPolicies<'a> {
        Self::from_aged(&crate::order::by_age(objects), mesh)
    }

    /// From the snapshot's objects, oldest first.
    pub fn from_aged(aged: &[&'a Object], mesh: &MeshConfig) -> PeerPolicies<'a> {
        let policies = aged
            .iter()
            .copied()
            .filter_map(|o| match &o.body {
                Body::PeerAuthentication(pa) => Some((o, pa)),
                _ => None,
            })
            .collect();
        PeerPolicies {
            policies,
            root_ns: mesh.root_namespace().to_string(),
        }
    }

    /// The effective mode of a workload in `namespace` with `labels` on target `port`.
    pub fn effective(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        port: u16,
    ) -> InboundMtls {
        let root = self.root_ns.as_str();
        // Oldest first, so the first policy found at a level is the one that counts.
        let first = |pick: &dyn Fn(&Object, &PeerAuthentication) -> bool| {
            self.policies
                .iter()
                .find(|(o, pa)| pick(o, pa))
                .map(|(o, pa)| Level::of(o, pa))
        };
        let mesh = first(&|o, pa| o.namespace() == root && !pa.has_selector());
        let namespace_level =
            first(&|o, pa| o.namespace() == namespace && namespace != root && !pa.has_selector());
        let workload = first(&|o, pa| {
            o.namespace() == namespace
                && namespace != root
                && pa.selector.as_ref().is_some_and(|s| {
                    !s.match_labels.is_empty() && labels_match(&s.match_labels, labels)
                })
        });
        compose(
            mesh.as_ref(),
            namespace_level.as_ref(),
            workload.as_ref(),
            port,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(name: &str, mode: PeerMode, ports: &[(u16, PeerMode)]) -> Level {
        Level {
            origin: Origin {
                kind: "PeerAuthentication".into(),
                namespace: "ns".into(),
                name: name.into(),
            },
            mode,
            ports: ports.to_vec(),
        }
    }

    fn decided(m: &InboundMtls) -> (MtlsMode, Option<&str>) {
        (m.mode, m.origin.as_ref().map(|o| o.name.as_str()))
    }

    #[test]
    fn no_policy_is_permissive_without_origin() {
        assert_eq!(
            decided(&compose(None, None, None, 80)),
            (MtlsMode::Permissive, None)
        );
        let unset = level("mesh", PeerMode::Unset, &[]);
        assert_eq!(
            decided(&compose(Some(&unset), None, None, 80)),
            (MtlsMode::Permissive, None)
        );
    }

    #[test]
    fn narrower_levels_win_and_unset_inherits() {
        let mesh = level("mesh", PeerMode::Strict, &[]);
        let ns = level("ns", PeerMode::Disable, &[]);
        let wl = level("wl", PeerMode::Permissive, &[]);
        let unset = level("unset", PeerMode::Unset, &[]);
        assert_eq!(
            decided(&compose(Some(&mesh), None, None, 80)),
            (MtlsMode::Strict, Some("mesh"))
        );
        assert_eq!(
            decided(&compose(Some(&mesh), Some(&ns), None, 80)),
            (MtlsMode::Disable, Some("ns"))
        );
        assert_eq!(
            decided(&compose(Some(&mesh), Some(&ns), Some(&wl), 80)),
            (MtlsMode::Permissive, Some("wl"))
        );
        // UNSET at the namespace and workload levels falls through to the mesh.
        assert_eq!(
            decided(&compose(Some(&mesh), Some(&unset), Some(&unset), 80)),
            (MtlsMode::Strict, Some("mesh"))
        );
        // A workload policy without mesh or namespace policies.
        assert_eq!(
            decided(&compose(None, None, Some(&wl), 80)),
            (MtlsMode::Permissive, Some("wl"))
        );
    }

    #[test]
    fn port_level_overrides_only_its_port() {
        let ns = level("ns", PeerMode::Strict, &[]);
        let wl = level(
            "wl",
            PeerMode::Disable,
            &[(8080, PeerMode::Strict), (9090, PeerMode::Unset)],
        );
        assert_eq!(
            decided(&compose(None, Some(&ns), Some(&wl), 8080)),
            (MtlsMode::Strict, Some("wl"))
        );
        assert_eq!(
            decided(&compose(None, Some(&ns), Some(&wl), 80)),
            (MtlsMode::Disable, Some("wl"))
        );
        // UNSET on a port keeps the composed mode (and who decided it).
        let wl_unset = level("wl", PeerMode::Unset, &[(9090, PeerMode::Unset)]);
        assert_eq!(
            decided(&compose(None, Some(&ns), Some(&wl_unset), 9090)),
            (MtlsMode::Strict, Some("ns"))
        );
        // Port-level entries of a namespace policy are not read.
        let ns_ports = level("ns", PeerMode::Permissive, &[(80, PeerMode::Strict)]);
        assert_eq!(
            decided(&compose(None, Some(&ns_ports), None, 80)),
            (MtlsMode::Permissive, Some("ns"))
        );
    }

    fn objects(yaml: &str) -> Vec<Object> {
        let bundle = weft_config::Bundle::load_str("t.yaml", yaml);
        assert!(bundle.diagnostics.is_empty(), "{:?}", bundle.diagnostics);
        bundle.objects
    }

    #[test]
    fn lookup_picks_levels_oldest_first_and_ignores_root_selectors() {
        let objs = objects(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: root-selector, namespace: istio-system}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: newer, namespace: shop, creationTimestamp: '2024-02-01T00:00:00Z'}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: older, namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: other-ns, namespace: other}
spec: {mtls: {mode: DISABLE}}
",
        );
        let mesh = MeshConfig::default();
        let peers = PeerPolicies::new(&objs, &mesh);
        let a: BTreeMap<String, String> = [("app".to_string(), "a".to_string())].into();
        let b: BTreeMap<String, String> = [("app".to_string(), "b".to_string())].into();
        assert_eq!(
            decided(&peers.effective("shop", &a, 80)),
            (MtlsMode::Permissive, Some("older"))
        );
        assert_eq!(
            decided(&peers.effective("shop", &b, 80)),
            (MtlsMode::Strict, Some("mesh"))
        );
        assert_eq!(
            decided(&peers.effective("other", &a, 80)),
            (MtlsMode::Disable, Some("other-ns"))
        );
        // In the root namespace the root policy is the mesh level; selectors there do not
        // count.
        assert_eq!(
            decided(&peers.effective("istio-system", &a, 80)),
            (MtlsMode::Strict, Some("mesh"))
        );
    }
}
