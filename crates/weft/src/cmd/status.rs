//! `weft status`, `weft proxy-status`, `weft proxy-config`: read the control plane's debug
//! API (`weft control --debug`, default 127.0.0.1:15014) and print tables or JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use weft_api::ProxyConfig;
use weft_control::debug::{SecretReport, StatusReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(clap::Args)]
pub struct Common {
    /// The control plane's debug address.
    #[arg(long, default_value = "127.0.0.1:15014")]
    control_debug: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
pub struct ProxyStatusArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    /// The workload certificate the CA issued to the proxy and its trust bundle.
    Secret,
}

#[derive(clap::Args)]
pub struct ProxyConfigArgs {
    /// The proxy id (`name.namespace`, see `weft proxy-status`).
    proxy: String,
    section: Section,
    #[command(flatten)]
    common: Common,
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// GET `path` from the debug API; the body of a 200, an error with the body otherwise.
fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let addr = &crate::up::resolve_debug_addr(addr);
    let mut stream = TcpStream::connect(addr).with_context(|| {
        format!("cannot reach the control plane's debug API at {addr} (is `weft control` running? pass --control-debug)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed response from the debug API")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{path}: HTTP {status}: {}", body.trim());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn status(args: StatusArgs) -> ExitCode {
    finish((|| {
        let body = get(&args.common.control_debug, "/debug/status")?;
        if args.common.output == Output::Json {
            println!("{}", body.trim_end());
            return Ok(());
        }
        let report: StatusReport =
            serde_json::from_str(&body).context("unexpected /debug/status")?;
        let rows = report
            .objects
            .iter()
            .map(|o| {
                let status = match o.status.as_str() {
                    "accepted" if !o.nacks.is_empty() => "rejected by proxy".to_string(),
                    "accepted" => format!("programmed {}/{}", o.programmed, o.proxies),
                    s => s.to_string(),
                };
                let detail = o
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.reason))
                    .chain(o.nacks.iter().cloned())
                    .collect::<Vec<_>>()
                    .join("; ");
                vec![
                    o.kind.clone(),
                    o.namespace.clone(),
                    o.name.clone(),
                    status,
                    detail,
                ]
            })
            .collect();
        table(&["KIND", "NAMESPACE", "NAME", "STATUS", "DETAIL"], rows);
        if !report.rejected_resources.is_empty() {
            println!();
            let rows = report
                .rejected_resources
                .iter()
                .map(|r| {
                    vec![
                        r.proxy.clone(),
                        r.resource.clone(),
                        "NACKED".to_string(),
                        r.reason.clone(),
                    ]
                })
                .collect();
            table(&["PROXY", "RESOURCE", "STATUS", "REASON"], rows);
        }
        Ok(())
    })())
}

pub fn proxy_status(args: ProxyStatusArgs) -> ExitCode {
    finish((|| {
        let body = get(&args.common.control_debug, "/debug/proxies")?;
        if args.common.output == Output::Json {
            println!("{}", body.trim_end());
            return Ok(());
        }
        let proxies: Vec<Value> =
            serde_json::from_str(&body).context("unexpected /debug/proxies")?;
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
        let rows = proxies
            .iter()
            .map(|p| {
                let since = p
                    .get("connected_since")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let nacked = p
                    .get("nacked")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
                let pending = p.get("pending_nonce").is_some_and(|n| !n.is_null());
                let sync = if nacked > 0 {
                    format!("NACKED ({nacked})")
                } else if pending {
                    "PENDING".into()
                } else {
                    "ACKED".into()
                };
                vec![
                    s(p, "id"),
                    s(p, "identity"),
                    ago(since),
                    s(p, "config_version"),
                    sync,
                    s(p, "cert_expiry"),
                ]
            })
            .collect();
        table(
            &[
                "PROXY",
                "IDENTITY",
                "CONNECTED SINCE",
                "CONFIG",
                "SYNC",
                "CERT EXPIRY",
            ],
            rows,
        );
        Ok(())
    })())
}

/// `weft proxy-config <id> secret`: as `istioctl proxy-config secret`, one row for the
/// workload certificate (`default`) and one per trusted root (`ROOTCA`).
fn secret(args: &ProxyConfigArgs) -> anyhow::Result<()> {
    let path = format!("/debug/proxy/{}/secret", args.proxy);
    let body = get(&args.common.control_debug, &path)?;
    if args.common.output == Output::Json {
        println!("{}", body.trim_end());
        return Ok(());
    }
    let report: SecretReport = serde_json::from_str(&body).context("unexpected secret report")?;
    let mut rows = Vec::new();
    match &report.certificate {
        Some(c) => rows.push(vec![
            "default".to_string(),
            "Cert Chain".to_string(),
            c.name.clone(),
            c.serial.clone(),
            c.not_before.clone(),
            c.not_after.clone(),
            c.issuer.clone(),
            c.sha256.clone(),
        ]),
        None => {
            let who = report.identity.as_deref().unwrap_or("the shared token");
            println!(
                "no certificate issued yet to proxy {} ({who})",
                report.proxy
            );
        }
    }
    for r in &report.trust_bundle {
        rows.push(vec![
            "ROOTCA".to_string(),
            "CA".to_string(),
            r.name.clone(),
            r.serial.clone(),
            r.not_before.clone(),
            r.not_after.clone(),
            r.issuer.clone(),
            r.sha256.clone(),
        ]);
    }
    table(
        &[
            "RESOURCE NAME",
            "TYPE",
            "IDENTITY / SUBJECT",
            "SERIAL NUMBER",
            "NOT BEFORE",
            "NOT AFTER",
            "ISSUER",
            "SHA-256",
        ],
        rows,
    );
    Ok(())
}

pub fn proxy_config(args: ProxyConfigArgs) -> ExitCode {
    finish((|| {
        if args.section == Section::Secret {
            return secret(&args);
        }
        let path = format!("/debug/proxy/{}/config", args.proxy);
        let body = get(&args.common.control_debug, &path)?;
        let cfg: ProxyConfig = serde_json::from_str(&body).context("unexpected proxy config")?;
        let json = args.common.output == Output::Json;
        let print = |v: Value| println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        match args.section {
            // Read from its own endpoint above.
            Section::Secret => {}
            Section::Listeners if json => print(serde_json::to_value(&cfg.listeners)?),
            Section::Routes if json => print(serde_json::to_value(&cfg.route_tables)?),
            Section::Clusters if json => print(serde_json::to_value(&cfg.clusters)?),
            Section::Endpoints if json => {
                let eps: Vec<Value> = cfg
                    .clusters
                    .iter()
                    .map(|c| serde_json::json!({"cluster": c.name, "endpoints": c.endpoints}))
                    .collect();
                print(Value::Array(eps));
            }
            Section::Listeners => table(
                &["NAME", "ADDRESS", "DIRECTION", "CHAINS"],
                cfg.listeners
                    .iter()
                    .map(|l| {
                        vec![
                            l.name.clone(),
                            l.address.to_string(),
                            format!("{:?}", l.direction).to_lowercase(),
                            l.chains.len().to_string(),
                        ]
                    })
                    .collect(),
            ),
            Section::Routes => table(
                &["TABLE", "VIRTUAL HOST", "DOMAINS", "ROUTES"],
                cfg.route_tables
                    .iter()
                    .flat_map(|t| {
                        t.virtual_hosts.iter().map(|v| {
                            vec![
                                t.name.clone(),
                                v.name.clone(),
                                v.domains.join(","),
                                v.routes.len().to_string(),
                            ]
                        })
                    })
                    .collect(),
            ),
            Section::Clusters => table(
                &["NAME", "SERVICE", "ENDPOINTS"],
                cfg.clusters
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.service.clone().unwrap_or_else(|| "-".into()),
                            c.endpoints.len().to_string(),
                        ]
                    })
                    .collect(),
            ),
            Section::Endpoints => table(
                &["CLUSTER", "ENDPOINT", "WEIGHT", "IDENTITY"],
                cfg.clusters
                    .iter()
                    .flat_map(|c| {
                        c.endpoints.iter().map(|e| {
                            vec![
                                c.name.clone(),
                                e.address.clone(),
                                e.weight.to_string(),
                                e.identity.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                    })
                    .collect(),
            ),
        }
        Ok(())
    })())
}

/// `12s ago`, `5m ago`, `3h ago` for a Unix time in seconds.
fn ago(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(unix);
    let s = now.saturating_sub(unix);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}
