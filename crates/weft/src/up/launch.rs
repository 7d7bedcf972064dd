//! How `weft up` starts its processes: a proxy is the lean `weft-proxy --control ...` found
//! next to the `weft` executable, or else this same executable as `weft proxy --control ...`
//! (the same code, more of it resident); an application is the Workload's command, found relative
//! to DIR, then on PATH, then next to the `weft` executable (where `cargo build` puts the
//! demo's binaries).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::plan::WorkloadDef;
use super::supervisor::ProcessSpec;

/// Where an application's command is, or an error naming the places looked at.
pub fn resolve_command(command: &str, w: &WorkloadDef, root: &Path) -> Result<PathBuf, String> {
    if command.trim().is_empty() {
        return Err(format!(
            "workload {}: spec.command is empty (name the program to run)",
            w.key()
        ));
    }
    let path = Path::new(command);
    let mut candidates = Vec::new();
    if path.is_absolute() {
        candidates.push(path.to_path_buf());
    } else {
        candidates.push(w.dir.join(path));
        candidates.push(root.join(path));
        if command.contains('/') {
            if let Ok(cwd) = std::env::current_dir() {
                candidates.push(cwd.join(path));
            }
        } else {
            if let Some(paths) = std::env::var_os("PATH") {
                candidates.extend(std::env::split_paths(&paths).map(|d| d.join(path)));
            }
            if let Some(dir) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
            {
                candidates.push(dir.join(path));
            }
        }
    }
    candidates
        .iter()
        .find(|c| is_executable(c))
        .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()))
        .ok_or_else(|| {
            format!(
                "workload {}: command `{command}` not found (looked in {}{}); build it or fix spec.command",
                w.key(),
                w.dir.display(),
                if command.contains('/') || path.is_absolute() {
                    ", DIR and the current directory"
                } else {
                    ", DIR, PATH and next to the weft executable"
                }
            )
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Per-replica paths under the run directory.
pub struct RunPaths {
    pub logs: PathBuf,
    pub data: PathBuf,
}

impl RunPaths {
    pub fn app_log(&self, replica: &str) -> PathBuf {
        self.logs.join(format!("{replica}.app.log"))
    }
    pub fn proxy_log(&self, replica: &str) -> PathBuf {
        self.logs.join(format!("{replica}.proxy.log"))
    }
}

/// The proxy program and the arguments before its flags: `weft-proxy` when it is next to
/// `weft` (where `cargo build --workspace` and installs put it), else `weft proxy`. Both run
/// `weft_proxy::cli::serve_control`; the lean binary maps only the data plane's code, which
/// is most of an idle proxy's memory.
pub fn proxy_program(weft: &Path) -> (PathBuf, Vec<String>) {
    let lean = weft.with_file_name("weft-proxy");
    if is_executable(&lean) {
        (lean, Vec::new())
    } else {
        (weft.to_path_buf(), vec!["proxy".to_string()])
    }
}

/// `weft-proxy --control <grpc> --id <id> --token <token> --admin <admin>` (or
/// `weft proxy ...`, see [`proxy_program`]).
pub fn proxy_spec(
    weft: &Path,
    control: SocketAddr,
    id: &str,
    token: &str,
    admin: SocketAddr,
    drain: Duration,
    log: PathBuf,
) -> ProcessSpec {
    let mut env = BTreeMap::new();
    if std::env::var_os("RUST_LOG").is_none() {
        env.insert("RUST_LOG".to_string(), "info".to_string());
    }
    let (program, mut args) = proxy_program(weft);
    args.extend([
        "--control".into(),
        format!("http://{control}"),
        "--id".into(),
        id.into(),
        "--token".into(),
        token.into(),
        "--admin".into(),
        admin.to_string(),
        "--drain-grace".into(),
        format!("{}ms", drain.as_millis()),
    ]);
    ProcessSpec {
        program,
        args,
        env,
        cwd: None,
        log,
        gid: None,
        unset: Vec::new(),
    }
}

/// The application of one replica.
pub fn app_spec(
    program: PathBuf,
    w: &WorkloadDef,
    env: BTreeMap<String, String>,
    data_dir: PathBuf,
    log: PathBuf,
) -> ProcessSpec {
    let mut env = env;
    env.entry("DATA_DIR".into())
        .or_insert_with(|| data_dir.display().to_string());
    ProcessSpec {
        program,
        args: w.spec.args.clone(),
        env,
        cwd: w.spec.working_dir.as_ref().map(|d| w.dir.join(d)),
        log,
        gid: None,
        unset: Vec::new(),
    }
}

/// Proxy settings an application must not inherit from `weft up`'s environment in a
/// network namespace: there the capture takes its traffic, as on Kubernetes.
pub const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `spec` run inside network namespace `netns` with `ip netns exec` (which also mounts
/// `/etc/netns/<netns>/hosts` over `/etc/hosts`). `ip` execs the program: the pid stays
/// the program's, so signals and the process group work as without a namespace.
pub fn in_netns(spec: ProcessSpec, netns: &str, gid: Option<u32>) -> ProcessSpec {
    let ip = super::netns_net::find_tool("ip").unwrap_or_else(|| PathBuf::from("ip"));
    let mut args = vec![
        "netns".to_string(),
        "exec".to_string(),
        netns.to_string(),
        spec.program.display().to_string(),
    ];
    args.extend(spec.args);
    let unset = PROXY_VARIABLES
        .iter()
        .filter(|v| !spec.env.contains_key(**v))
        .map(|v| v.to_string())
        .collect();
    ProcessSpec {
        program: ip,
        args,
        gid,
        unset,
        ..spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::plan::topology;
    use weft_config::Bundle;

    fn workload(dir: &Path, command: &str) -> WorkloadDef {
        let name = dir.join("w.yaml").display().to_string();
        let yaml = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: w, namespace: shop}}\nspec: {{command: \"{command}\"}}\n"
        );
        let t = topology(&Bundle::load_str(&name, &yaml).objects);
        t.workloads["shop/w"].clone()
    }

    #[test]
    fn proxies_run_the_lean_binary_when_it_is_next_to_weft() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let weft = dir.path().join("weft");
        let (program, args) = proxy_program(&weft);
        assert_eq!((program, args), (weft.clone(), vec!["proxy".to_string()]));
        let lean = dir.path().join("weft-proxy");
        std::fs::write(&lean, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&lean, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(proxy_program(&weft), (lean, Vec::new()));
    }

    #[test]
    fn commands_resolve_relative_to_dir_then_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let app = bin.join("app");
        std::fs::write(&app, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
        let w = workload(dir.path(), "bin/app");
        let found = resolve_command("bin/app", &w, dir.path()).unwrap();
        assert_eq!(found, std::fs::canonicalize(&app).unwrap());
        // `sh` is on PATH everywhere.
        assert!(resolve_command("sh", &w, dir.path()).is_ok());
        let err = resolve_command("no-such-program-x", &w, dir.path()).unwrap_err();
        assert!(err.contains("not found") && err.contains("shop/w"), "{err}");
        // A file that is not executable is not a command.
        std::fs::write(bin.join("data"), "x").unwrap();
        assert!(resolve_command("bin/data", &w, dir.path()).is_err());
    }
}
