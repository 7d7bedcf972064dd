//! Where configuration objects come from: a [`Source`] is a watch stream of events.
//!
//! Events are keyed by an *origin*: a file for [`DirectorySource`], one object for a future
//! Kubernetes source (whose informers deliver add/update/delete per object, which map
//! one-to-one on [`Event::Apply`] / [`Event::Delete`]). An origin that cannot be read
//! reports [`Event::Error`] and keeps its previous objects: a half-written file never
//! reaches proxies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;
use weft_config::diag::codes;
use weft_config::{Bundle, Diagnostic, Object, Severity};

/// Changes closer together than this are read once (editors write files in steps).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub enum Event {
    /// `origin` now holds exactly these objects (added or updated). `problems` are
    /// non-fatal diagnostics (e.g. a document that failed its schema and was left out).
    Apply {
        origin: String,
        objects: Vec<Object>,
        problems: Vec<Diagnostic>,
    },
    /// `origin` is gone, with its objects.
    Delete { origin: String },
    /// `origin` could not be read or parsed; its previous objects stay in force.
    Error {
        origin: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// The initial listing is complete.
    Synced,
}

/// A producer of config events. `watch` starts it; the stream ends when the source stops.
pub trait Source: Send + 'static {
    fn watch(self: Box<Self>) -> mpsc::UnboundedReceiver<Event>;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("--config-dir {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot watch {path}: {source} (check permissions and the inotify watch limit)")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// A source fed by hand (tests, embedding).
pub struct MemorySource {
    rx: mpsc::UnboundedReceiver<Event>,
}

/// Sends events into a [`MemorySource`].
#[derive(Clone)]
pub struct MemoryHandle {
    tx: mpsc::UnboundedSender<Event>,
}

impl MemorySource {
    pub fn new() -> (MemorySource, MemoryHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        (MemorySource { rx }, MemoryHandle { tx })
    }
}

impl Source for MemorySource {
    fn watch(self: Box<Self>) -> mpsc::UnboundedReceiver<Event> {
        self.rx
    }
}

impl MemoryHandle {
    /// Replace `origin`'s objects with those parsed from `yaml`, as a file would.
    pub fn apply_yaml(&self, origin: &str, yaml: &str) {
        let bundle = Bundle::load_str(origin, yaml);
        let _ = self.tx.send(event_for(origin, bundle));
    }

    pub fn send(&self, event: Event) {
        let _ = self.tx.send(event);
    }
}

/// Every `*.yaml`, `*.yml` and `*.json` file under a directory, watched recursively.
pub struct DirectorySource {
    dir: PathBuf,
    watcher: notify::RecommendedWatcher,
    changes: mpsc::UnboundedReceiver<()>,
}

impl DirectorySource {
    /// Starts watching at once, so nothing written after this call is missed.
    pub fn new(dir: &Path) -> Result<DirectorySource, SourceError> {
        if !dir.is_dir() {
            return Err(SourceError::NotADirectory(dir.to_path_buf()));
        }
        let (tx, changes) = mpsc::unbounded_channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res
                && is_change(&event.kind)
            {
                let _ = tx.send(());
            }
        })
        .map_err(|source| SourceError::Watch {
            path: dir.to_path_buf(),
            source,
        })?;
        watcher
            .watch(dir, RecursiveMode::Recursive)
            .map_err(|source| SourceError::Watch {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(DirectorySource {
            dir: dir.to_path_buf(),
            watcher,
            changes,
        })
    }
}

impl Source for DirectorySource {
    fn watch(self: Box<Self>) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        let DirectorySource {
            dir,
            watcher,
            mut changes,
        } = *self;
        tokio::spawn(async move {
            let _watcher = watcher;
            let mut seen: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
            if !rescan(&dir, &mut seen, &tx).await || tx.send(Event::Synced).is_err() {
                return;
            }
            while changes.recv().await.is_some() {
                // Wait until the directory is quiet, then read it once.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                if !rescan(&dir, &mut seen, &tx).await {
                    return;
                }
            }
        });
        rx
    }
}

/// Read the directory and send an event per file that changed. False when nobody listens.
async fn rescan(
    dir: &Path,
    seen: &mut BTreeMap<PathBuf, Vec<u8>>,
    tx: &mpsc::UnboundedSender<Event>,
) -> bool {
    let root = dir.to_path_buf();
    let current = match tokio::task::spawn_blocking(move || read_tree(&root)).await {
        Ok(files) => files,
        Err(e) => {
            warn!(error = %e, "reading the config directory failed");
            return true;
        }
    };
    let gone: Vec<PathBuf> = seen
        .keys()
        .filter(|p| !current.contains_key(*p))
        .cloned()
        .collect();
    for path in gone {
        seen.remove(&path);
        let origin = path.display().to_string();
        if tx.send(Event::Delete { origin }).is_err() {
            return false;
        }
    }
    for (path, read) in current {
        let origin = path.display().to_string();
        let event = match read {
            Err(e) => Event::Error {
                origin: origin.clone(),
                diagnostics: vec![Diagnostic::error(
                    codes::UNREADABLE,
                    format!("cannot read {origin}: {e}"),
                )],
            },
            Ok(bytes) => {
                if seen.get(&path) == Some(&bytes) {
                    continue;
                }
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let event = event_for(&origin, Bundle::load_str(&origin, &text));
                if !matches!(event, Event::Error { .. }) {
                    seen.insert(path, bytes);
                }
                event
            }
        };
        if tx.send(event).is_err() {
            return false;
        }
    }
    true
}

/// A parsed file: `Error` when any document does not parse (nothing of it applies).
fn event_for(origin: &str, bundle: Bundle) -> Event {
    let (fatal, problems): (Vec<Diagnostic>, Vec<Diagnostic>) = bundle
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .partition(|d| d.code == codes::SYNTAX || d.code == codes::UNREADABLE);
    if bundle.unreadable || !fatal.is_empty() {
        return Event::Error {
            origin: origin.to_string(),
            diagnostics: fatal,
        };
    }
    Event::Apply {
        origin: origin.to_string(),
        objects: bundle.objects,
        problems,
    }
}

type Tree = BTreeMap<PathBuf, std::io::Result<Vec<u8>>>;

fn read_tree(dir: &Path) -> Tree {
    // Unreadable directories are skipped here; the next rescan tries them again.
    weft_config::tree::config_files(dir, &mut |_, _| {})
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path);
            (path, bytes)
        })
        .collect()
}

/// Writes, creations, removals and renames; not reads or metadata.
fn is_change(kind: &EventKind) -> bool {
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n";

    async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10s")
            .expect("source open")
    }

    #[tokio::test]
    async fn directory_source_lists_watches_and_keeps_files_that_break() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nested");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("vs.yaml"), VS).unwrap();
        let source = DirectorySource::new(dir.path()).unwrap();
        let mut rx = Box::new(source).watch();
        match next(&mut rx).await {
            Event::Apply { objects, .. } => assert_eq!(objects.len(), 1),
            other => panic!("expected apply, got {other:?}"),
        }
        assert!(matches!(next(&mut rx).await, Event::Synced));
        std::fs::write(sub.join("vs.yaml"), "kind: [unclosed\n").unwrap();
        assert!(matches!(next(&mut rx).await, Event::Error { .. }));
        std::fs::remove_file(sub.join("vs.yaml")).unwrap();
        assert!(matches!(next(&mut rx).await, Event::Delete { .. }));
    }

    #[tokio::test]
    async fn memory_source_parses_yaml() {
        let (source, handle) = MemorySource::new();
        let mut rx = Box::new(source).watch();
        handle.apply_yaml("a.yaml", VS);
        match next(&mut rx).await {
            Event::Apply {
                origin, objects, ..
            } => {
                assert_eq!(origin, "a.yaml");
                assert_eq!(objects[0].name(), "r");
            }
            other => panic!("expected apply, got {other:?}"),
        }
    }
}
