//! Watching DIR through the control plane's own directory source: [`GatedSource`] sits
//! between the [`DirectorySource`] and the control plane. A file whose objects fail
//! validation is held back (the control plane keeps that file's previous objects, as for
//! a file that does not parse) and reported with `weft analyze` diagnostics; every file
//! that passes is forwarded, and `weft up` is told so it can restart changed Workloads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use weft_config::{Body, Diagnostic, Object, Severity};
use weft_control::source::{DirectorySource, Event, Source};

use super::netns::ServiceVips;

/// What `weft up` hears about DIR.
#[derive(Debug)]
pub enum DirChange {
    /// `origin` now holds these (valid) objects.
    Applied {
        origin: String,
        objects: Vec<Object>,
    },
    /// `origin` was removed.
    Deleted { origin: String },
    /// `origin` was rejected; its previous objects stay in force.
    Rejected {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// The initial listing is complete.
    Synced,
}

pub struct GatedSource {
    inner: DirectorySource,
    changes: mpsc::UnboundedSender<DirChange>,
    vips: Option<Arc<Mutex<ServiceVips>>>,
}

impl GatedSource {
    pub fn new(inner: DirectorySource, changes: mpsc::UnboundedSender<DirChange>) -> GatedSource {
        GatedSource {
            inner,
            changes,
            vips: None,
        }
    }

    /// `--netns`: Services without a `clusterIP` reach the control plane with the
    /// address their names resolve to inside the namespaces, as a Kubernetes API server
    /// would have assigned one.
    pub fn with_service_addresses(mut self, vips: Arc<Mutex<ServiceVips>>) -> GatedSource {
        self.vips = Some(vips);
        self
    }
}

/// Give every Service of an applied file without a cluster IP its address from `vips`.
pub fn assign_cluster_ips(event: Event, vips: &Mutex<ServiceVips>) -> Event {
    let Event::Apply {
        origin,
        mut objects,
        problems,
    } = event
    else {
        return event;
    };
    if let Ok(mut vips) = vips.lock() {
        for o in &mut objects {
            let (namespace, name) = (o.namespace().to_string(), o.name().to_string());
            let Body::Service(svc) = &mut o.body else {
                continue;
            };
            let unset = svc
                .cluster_ip
                .as_deref()
                .is_none_or(|ip| ip.trim().is_empty());
            if unset && svc.service_type.as_deref() != Some("ExternalName") {
                svc.cluster_ip = vips
                    .assign(&namespace, &name, None)
                    .map(|ip| ip.to_string());
            }
        }
    }
    Event::Apply {
        origin,
        objects,
        problems,
    }
}

/// The errors that keep a file from applying: schema problems found while loading and
/// per-object validation errors.
pub fn errors_of(objects: &[Object], problems: &[Diagnostic]) -> Vec<Diagnostic> {
    problems
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .chain(
            objects
                .iter()
                .flat_map(weft_config::validate::validate)
                .filter(|d| d.severity == Severity::Error),
        )
        .collect()
}

/// Decide what the control plane gets for one source event, and what `weft up` hears.
pub fn gate(event: Event) -> (Event, DirChange) {
    match event {
        Event::Apply {
            origin,
            objects,
            problems,
        } => {
            let errors = errors_of(&objects, &problems);
            if errors.is_empty() {
                let change = DirChange::Applied {
                    origin: origin.clone(),
                    objects: objects.clone(),
                };
                (
                    Event::Apply {
                        origin,
                        objects,
                        problems,
                    },
                    change,
                )
            } else {
                (
                    Event::Error {
                        origin: origin.clone(),
                        diagnostics: errors.clone(),
                    },
                    DirChange::Rejected {
                        origin,
                        diagnostics: errors,
                    },
                )
            }
        }
        Event::Error {
            origin,
            diagnostics,
        } => (
            Event::Error {
                origin: origin.clone(),
                diagnostics: diagnostics.clone(),
            },
            DirChange::Rejected {
                origin,
                diagnostics,
            },
        ),
        Event::Delete { origin } => (
            Event::Delete {
                origin: origin.clone(),
            },
            DirChange::Deleted { origin },
        ),
        Event::Synced => (Event::Synced, DirChange::Synced),
    }
}

impl Source for GatedSource {
    fn watch(self: Box<Self>) -> mpsc::UnboundedReceiver<Event> {
        let GatedSource {
            inner,
            changes,
            vips,
        } = *self;
        let mut events = Box::new(inner).watch();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let (forward, change) = gate(event);
                let forward = match &vips {
                    Some(v) => assign_cluster_ips(forward, v),
                    None => forward,
                };
                let _ = changes.send(change);
                if tx.send(forward).is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// The objects of DIR as the accepted files hold them.
#[derive(Debug, Default)]
pub struct DirObjects {
    by_origin: BTreeMap<String, Vec<Object>>,
}

impl DirObjects {
    /// Apply a change; true when the object set changed.
    pub fn apply(&mut self, change: &DirChange) -> bool {
        match change {
            DirChange::Applied { origin, objects } => {
                self.by_origin.insert(origin.clone(), objects.clone());
                true
            }
            DirChange::Deleted { origin } => self.by_origin.remove(origin).is_some(),
            DirChange::Rejected { .. } | DirChange::Synced => false,
        }
    }

    pub fn all(&self) -> Vec<Object> {
        self.by_origin.values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_config::Bundle;

    fn apply(yaml: &str) -> Event {
        let b = Bundle::load_str("d/vs.yaml", yaml);
        Event::Apply {
            origin: "d/vs.yaml".into(),
            objects: b.objects,
            problems: b.diagnostics,
        }
    }

    #[test]
    fn a_valid_file_passes_and_an_invalid_one_is_held_back() {
        let good = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n";
        let (forward, change) = gate(apply(good));
        assert!(matches!(forward, Event::Apply { .. }));
        let mut objects = DirObjects::default();
        assert!(objects.apply(&change));
        assert_eq!(objects.all().len(), 1);

        // A weight out of range is a validation error: the control plane gets Error.
        let bad = good.replace("{host: cart}", "{host: cart}\n      weight: -5");
        let (forward, change) = gate(apply(&bad));
        assert!(matches!(forward, Event::Error { .. }), "{forward:?}");
        let DirChange::Rejected { diagnostics, .. } = &change else {
            panic!("rejected expected, got {change:?}");
        };
        assert!(!diagnostics.is_empty());
        assert!(!objects.apply(&change));
        assert_eq!(objects.all().len(), 1);
    }
}
