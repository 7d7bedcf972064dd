//! Kubernetes-side analyzers: annotations, sidecar injection, webhooks, Services and
//! Deployments, multicluster settings, and status written back by the cluster.
//!
//! | Analyzer | Codes | Local (file) mode |
//! |---|---|---|
//! | `annotations.K8sAnalyzer` | IST0107 misplaced, IST0108 unknown, IST0125 invalid, IST0135 deprecated annotation | yes |
//! | `maturity.AlphaAnalyzer` | IST0136 alpha annotation | yes |
//! | `injection.Analyzer` | IST0102 namespace not injected, IST0148 injected by default, IST0123 conflicting injection labels, IST0103 pod missing proxy | yes (for Kubernetes deployments with injection) |
//! | `injection.ImageAnalyzer` | IST0158 proxy image differs from the injector's | yes, when the injector ConfigMap is among the files |
//! | `injection.ImageAutoAnalyzer` | IST0146 (Deployment) / IST0147 (Pod) `image: auto` without injection | yes |
//! | `webhook.Analyzer` | IST0139 overlapping injection webhooks, webhook to a missing Service | yes |
//! | `externalcontrolplane.ExternalControlPlaneAnalyzer` | IST0163 webhook without URL, IST0164 webhook URL by IP | yes (no DNS lookups: URLs are checked syntactically) |
//! | `deployment.ServiceAssociationAnalyzer` | IST0116 one port, several protocols; IST0137 several ports, one target port | yes |
//! | `deployment.ApplicationUIDAnalyzer` | IST0144 application runs as UID 1337 | yes |
//! | `service.PortNameAnalyzer` | IST0118 port name without protocol, IST0150 ExternalName port without protocol | yes |
//! | `multicluster.MeshNetworksAnalyzer` | IST0126 unknown `fromRegistry` | yes, from the `istio` ConfigMap's `meshNetworks` (a separate `--meshNetworks` file goes through [`multicluster::analyze_mesh_networks`]) |
//! | `k8sgateway.CRDVersionAnalyzer` | IST0176 Gateway API CRD older than required | only for CRDs exported from a cluster (bundle-version annotation) |
//! | `conditions.ConditionAnalyzer` | IST0171 negative status condition | only for objects exported with `status` |

mod annotation_table;
mod annotations;
mod deployment;
mod index;
mod injection;
pub mod multicluster;
mod service;
mod status;
mod webhook;

use super::{Analyzer, Context};

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(annotations::K8sAnalyzer),
        Box::new(annotations::AlphaAnalyzer),
        Box::new(injection::InjectionAnalyzer),
        Box::new(injection::ImageAnalyzer),
        Box::new(injection::ImageAutoAnalyzer),
        Box::new(webhook::WebhookAnalyzer),
        Box::new(webhook::ExternalControlPlaneAnalyzer),
        Box::new(deployment::ServiceAssociationAnalyzer),
        Box::new(deployment::ApplicationUidAnalyzer),
        Box::new(service::PortNameAnalyzer),
        Box::new(multicluster::MeshNetworksAnalyzer),
        Box::new(status::CrdVersionAnalyzer),
        Box::new(status::ConditionAnalyzer),
    ]
}

/// The mesh-wide proxy image variant (`defaultConfig.image.imageType`), if set.
fn mesh_image_type(ctx: &Context<'_>) -> Option<String> {
    ctx.mesh
        .default_config
        .as_ref()?
        .image
        .as_ref()?
        .image_type
        .clone()
}
