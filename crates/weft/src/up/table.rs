//! What `weft up` prints once the mesh is up: one row per workload and gateway, then the
//! addresses a user needs (gateway, control plane, logs).

use std::collections::BTreeMap;

use super::mesh::Mesh;
use super::state::UpState;

/// Columns padded to their widest cell, two spaces apart.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        s.join("  ").trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// The summary table. `not_ready` holds the labels (`app cart-0`) that failed readiness.
pub fn render(mesh: &Mesh, state: &UpState, mtls: &str, not_ready: &[String]) -> String {
    struct Row {
        services: String,
        version: String,
        replicas: usize,
        ready: usize,
        addresses: Vec<String>,
        proxies: Vec<String>,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for m in mesh.members.values() {
        let w = mesh.topology.workloads.get(&m.workload);
        let row = rows.entry(m.workload.clone()).or_insert_with(|| Row {
            services: w
                .map(|w| w.services.join(","))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    if w.is_none() {
                        "(gateway)".into()
                    } else {
                        "-".into()
                    }
                }),
            version: w.map_or("-", |w| w.version()).to_string(),
            replicas: 0,
            ready: 0,
            addresses: Vec::new(),
            proxies: Vec::new(),
        });
        row.replicas += 1;
        let failed = not_ready
            .iter()
            .any(|l| l == &format!("app {}", m.replica) || l == &format!("proxy {}", m.replica));
        if !failed {
            row.ready += 1;
        }
        row.addresses.push(m.placed.instance.address.to_string());
        row.proxies.push(m.placed.admin.to_string());
    }
    let table_rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(workload, r)| {
            vec![
                workload,
                r.services,
                format!("{}/{}", r.ready, r.replicas),
                r.version,
                r.addresses.join(","),
                r.proxies.join(","),
            ]
        })
        .collect();
    let mut out = columns(
        &[
            "WORKLOAD",
            "SERVICES",
            "READY",
            "VERSION",
            "ADDRESS",
            "PROXY ADMIN",
        ],
        &table_rows,
    );
    out.push('\n');
    let mode = match &state.network {
        Some(_) => format!(
            "{} (a network namespace per replica, iptables capture; apps call plain http://cart:3002)",
            state.mode
        ),
        None => format!(
            "{} (apps reach services through HTTP_PROXY, e.g. http://cart:3002)",
            state.mode
        ),
    };
    let mut facts = vec![("mode", mode), ("mTLS", mtls.to_string())];
    if let Some(n) = &state.network {
        facts.push((
            "network",
            format!(
                "bridge {} on {} ({} is the replicas' default route), namespaces {}*, Service names in /etc/netns/<ns>/hosts; gateways run in the host namespace",
                n.bridge, n.subnet, n.gateway, n.prefix
            ),
        ));
    }
    for m in mesh.members.values() {
        for (port, url) in &m.placed.urls {
            facts.push(("gateway", format!("{url}  (port {port}, {})", m.workload)));
        }
    }
    facts.push((
        "control plane",
        format!("grpc {}, debug http://{}", state.control, state.debug),
    ));
    facts.push((
        "dashboard",
        format!(
            "http://{}/   (service graph, golden signals, config status, traces)",
            state.debug
        ),
    ));
    facts.push((
        "status",
        format!(
            "weft status --control-debug {}   (weft proxy-status, weft proxy-config likewise)",
            state.debug
        ),
    ));
    facts.push((
        "logs",
        format!(
            "{}/logs/<replica>.app.log, <replica>.proxy.log",
            state.run_dir.display()
        ),
    ));
    facts.push((
        "stop",
        "Ctrl-C here, or `weft down` from another terminal".to_string(),
    ));
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in facts {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    if !not_ready.is_empty() {
        out.push_str(&format!(
            "\nnot ready yet: {} (see their logs; weft up keeps restarting what exits)\n",
            not_ready.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let t = columns(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()]]);
        assert_eq!(t, "A     LONGER\nxxxx  y\n");
    }
}
