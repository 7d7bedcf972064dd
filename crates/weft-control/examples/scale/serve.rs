//! The control-plane child: the generated directory through the directory source, the
//! registry file, and endpoint moves read from stdin (`move SERVICE K ROUND`: instance K
//! of SERVICE gets another address, as a pod rescheduled elsewhere would; `quit` exits).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::io::BufRead;
use weft_control::source::DirectorySource;
use weft_control::{ControlPlane, Options};

use crate::mesh;

pub async fn serve(args: &[String], shape: mesh::Shape) -> Result<(), Box<dyn std::error::Error>> {
    let dir: PathBuf = crate::arg(args, "--dir", PathBuf::new());
    let mut registry =
        weft_compile::load_registry(&dir.join("registry.yaml")).map_err(|d| d.message.clone())?;
    let source = DirectorySource::new(&dir.join("config"))?;
    let cp = ControlPlane::start(
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            registry: registry.clone(),
            ..Options::default()
        },
        Box::new(source),
    )
    .await?;
    // Ready once every generated object is accepted.
    let mut status = cp.status_changes();
    let want = shape.object_count();
    loop {
        let statuses = cp.statuses();
        if statuses.len() >= want && statuses.iter().all(|s| s.status == "accepted") {
            break;
        }
        if status.changed().await.is_err() {
            return Err("control plane stopped before loading the config".into());
        }
    }
    println!("READY {}", cp.grpc_addr());
    // Stdin is read on a thread (blocking reads); commands arrive over a channel.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if line.trim() == "quit" {
            // Exit with every stream still open: a heap profiler wrapping this process
            // then reports what the control plane holds in steady state as "leaked".
            std::process::exit(0);
        }
        let parts: Vec<usize> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        let [service, k, round] = parts[..] else {
            eprintln!("serve: cannot read command {line:?}");
            continue;
        };
        let name = mesh::instance_name(service, k);
        if let Some(i) = registry.instances.iter_mut().find(|i| i.name == name) {
            i.address = mesh::moved_address(service, k, round).into();
        }
        cp.set_registry(registry.clone());
    }
    Ok(())
}
