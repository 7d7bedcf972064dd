//! `multicluster.MeshNetworksAnalyzer`: every `fromRegistry` in the mesh networks
//! configuration must name a known cluster (IST0126): the local cluster (`Kubernetes`) or
//! a remote cluster from an Istio remote secret (`istio/multiCluster=true`).
//!
//! Mesh networks come from the `meshNetworks` key of the `istio` ConfigMap.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::analyze::{Analyzer, Context, finding, finding_on};
use crate::diag::{Diagnostic, ResourceRef, Severity};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::source::SourceFile;
use crate::yaml::{Node, Value};

/// The cluster ID of the local cluster when none is configured.
pub const LOCAL_CLUSTER: &str = "Kubernetes";

/// Cluster IDs known from the files: the local one and the keys of remote secrets.
pub fn known_registries(ctx: &Context<'_>) -> BTreeSet<String> {
    let mut known = BTreeSet::from([LOCAL_CLUSTER.to_string()]);
    for s in ctx.of(Kind::Secret) {
        if s.label("istio/multiCluster") != Some("true") {
            continue;
        }
        if let Body::Secret(body) = &s.body {
            known.extend(body.data.keys().cloned());
            known.extend(body.string_data.keys().cloned());
        }
    }
    known
}

/// The unknown registries named in a mesh networks document (`networks.<name>.endpoints[].fromRegistry`).
pub fn unknown_registries(networks: &Node, known: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(Value::Map(nets)) = networks.get("networks").map(|n| &n.value) else {
        return out;
    };
    for (name, net) in nets {
        let Some(Value::Seq(eps)) = net.get("endpoints").map(|e| &e.value) else {
            continue;
        };
        for ep in eps {
            if let Some(reg) = ep.get("fromRegistry").and_then(Node::as_str)
                && !known.contains(reg)
            {
                out.push((name.as_str().unwrap_or("").to_string(), reg.to_string()));
            }
        }
    }
    out
}

fn message(network: &str, registry: &str) -> String {
    format!(
        "Network {network} of the mesh networks configuration takes endpoints from registry \"{registry}\", which is not a known cluster."
    )
}

const HINT: &str = "use the cluster ID of the local cluster (\"Kubernetes\" by default) or of a remote cluster registered with an Istio remote secret";

/// Check a mesh networks document loaded from its own file (`--meshNetworks`): findings
/// are reported on `MeshNetworks istio-system/meshnetworks`, as istioctl does.
pub fn analyze_mesh_networks(ctx: &Context<'_>, networks: &Node) -> Vec<Diagnostic> {
    let known = known_registries(ctx);
    unknown_registries(networks, &known)
        .into_iter()
        .map(|(net, reg)| {
            let r = ResourceRef {
                kind: "MeshNetworks".into(),
                name: "meshnetworks".into(),
                namespace: Some("istio-system".into()),
            };
            finding_on(r, "IST0126", Severity::Error, message(&net, &reg))
                .with_hint(HINT)
                .with_span(networks.span.clone())
        })
        .collect()
}

pub struct MeshNetworksAnalyzer;

impl Analyzer for MeshNetworksAnalyzer {
    fn name(&self) -> &'static str {
        "multicluster.MeshNetworksAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        if let Some(networks) = &ctx.mesh_networks {
            out.extend(analyze_mesh_networks(ctx, networks));
        }
        let known = known_registries(ctx);
        for cm in ctx
            .of(Kind::ConfigMap)
            .filter(|o| o.name() == "istio" || o.name().starts_with("istio-"))
        {
            let Body::ConfigMap(body) = &cm.body else {
                continue;
            };
            let Some(text) = body.data.get("meshNetworks") else {
                continue;
            };
            let file = Arc::new(SourceFile {
                name: format!("{}/{} meshNetworks", cm.namespace(), cm.name()),
                text: text.clone(),
            });
            let Ok(docs) = crate::yaml::parse_documents(&file) else {
                continue;
            };
            let Some(doc) = docs.first() else { continue };
            for (net, reg) in unknown_registries(doc, &known) {
                out.push(report(cm, &net, &reg));
            }
        }
    }
}

fn report(cm: &Object, net: &str, reg: &str) -> Diagnostic {
    finding(
        cm,
        "IST0126",
        Severity::Error,
        crate::path::FieldPath::parse("data.meshNetworks"),
        message(net, reg),
    )
    .with_hint(HINT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bundle;

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: remote\n  namespace: istio-system\n  labels:\n    istio/multiCluster: \"true\"\nstringData:\n  cluster2: x\n---\n";

    fn cm(reg: &str) -> String {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  meshNetworks: |\n    networks:\n      n1:\n        endpoints:\n        - fromRegistry: {reg}\n"
        )
    }

    fn run(yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(&MeshNetworksAnalyzer, yaml)
    }

    #[test]
    fn unknown_registry() {
        let d = run(&format!("{SECRET}{}", cm("cluster3")));
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("\"cluster3\""));
    }

    #[test]
    fn known_registries_are_silent() {
        assert!(run(&format!("{SECRET}{}", cm("cluster2"))).is_empty());
        assert!(run(&cm("Kubernetes")).is_empty());
    }

    #[test]
    fn separate_mesh_networks_file() {
        let b = Bundle::load_str("t.yaml", SECRET);
        let ctx = Context::new(&b.objects);
        let text = "networks:\n  network1:\n    endpoints:\n    - fromRegistry: kubernetes\n  network2:\n    endpoints:\n    - fromRegistry: cluster2\n    - fromRegistry: istio-testing\n";
        let file = Arc::new(SourceFile {
            name: "meshnetworks.yaml".into(),
            text: text.into(),
        });
        let doc = crate::yaml::parse_documents(&file).unwrap().remove(0);
        let d = analyze_mesh_networks(&ctx, &doc);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(
            d[0].resource.as_ref().unwrap().to_string(),
            "MeshNetworks istio-system/meshnetworks"
        );
    }
}
