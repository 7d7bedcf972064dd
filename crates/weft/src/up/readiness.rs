//! An application's readiness as its Workload's `readinessProbe` defines it: `GET path` on
//! the application's own address (not through its proxy), a status from 200 to 399 within
//! `timeoutSeconds`, retried every `periodSeconds`, as the kubelet does. In `--netns` mode
//! the request is sent from inside the replica's network namespace: from outside, the
//! inbound capture would answer for the application.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_config::kinds::weft::WorkloadSpec;

/// A Workload's `readinessProbe.httpGet`, resolved against its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// The Workload port probed (the application's own port, as the Service reaches it).
    pub port: u16,
    pub path: String,
    pub period: Duration,
    pub timeout: Duration,
}

impl HttpProbe {
    /// The probe of `spec`, if it declares one that validation accepted.
    pub fn of(spec: &WorkloadSpec) -> Option<HttpProbe> {
        let probe = spec.readiness_probe.as_ref()?;
        let get = probe.http_get.as_ref()?;
        let port = spec.port_of(get.port.as_ref()?)?;
        Some(HttpProbe {
            port,
            path: get.path().to_string(),
            period: Duration::from_secs(u64::from(probe.period_seconds().max(1))),
            timeout: Duration::from_secs(u64::from(probe.timeout_seconds().max(1))),
        })
    }

    /// One probe of the application at `addr` (in network namespace `netns`, if any).
    pub async fn check(&self, netns: Option<&str>, addr: SocketAddr) -> bool {
        let attempt = async {
            let stream = match netns {
                Some(ns) => connect_in(ns, addr, self.timeout).await.ok()?,
                None => tokio::net::TcpStream::connect(addr).await.ok()?,
            };
            get_status(stream, &addr.to_string(), &self.path).await
        };
        matches!(
            tokio::time::timeout(self.timeout, attempt).await,
            Ok(Some(status)) if (200..400).contains(&status)
        )
    }
}

/// A connection to `addr` made from inside network namespace `netns`. The socket is made
/// on a short-lived thread that joined the namespace (a namespace belongs to a thread, so
/// no other work runs there); a socket keeps the namespace it was made in, so the rest of
/// the exchange runs on the runtime as usual.
pub async fn connect_in(
    netns: &str,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    use nix::sched::{CloneFlags, setns};
    let file = std::fs::File::open(format!("/var/run/netns/{netns}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("probe {netns}"))
        .spawn(move || {
            let connected = setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)
                .and_then(|()| std::net::TcpStream::connect_timeout(&addr, timeout))
                .and_then(|s| s.set_nonblocking(true).map(|()| s));
            let _ = tx.send(connected);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the namespace thread ended without a result"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// `GET path` over `stream`; the response's status code, none when the answer is not HTTP.
async fn get_status(mut stream: tokio::net::TcpStream, host: &str, path: &str) -> Option<u16> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: weft-up-probe\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    // The status line is all that is needed; it fits well within this.
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status_of(&head)
}

/// The code of an HTTP/1.x status line (`HTTP/1.1 503 Service Unavailable`).
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use weft_config::{Body, Bundle};

    fn spec(probe: &str) -> WorkloadSpec {
        let yaml = format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: w, namespace: shop}}\nspec:\n  command: app\n  ports: [{{name: http, port: 3001}}]\n{probe}"
        );
        let b = Bundle::load_str("w.yaml", &yaml);
        assert!(b.diagnostics.is_empty(), "{:?}", b.diagnostics);
        match &b.objects[0].body {
            Body::Workload(s) => s.clone(),
            _ => panic!("not a Workload"),
        }
    }

    #[test]
    fn a_probe_resolves_its_named_port_and_takes_kubernetes_defaults() {
        let p = HttpProbe::of(&spec(
            "  readinessProbe: {httpGet: {path: /ready, port: http}}\n",
        ))
        .expect("probe");
        assert_eq!(
            p,
            HttpProbe {
                port: 3001,
                path: "/ready".into(),
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
            }
        );
        let p = HttpProbe::of(&spec(
            "  readinessProbe: {httpGet: {port: 3001}, periodSeconds: 2, timeoutSeconds: 3}\n",
        ))
        .expect("probe");
        assert_eq!(
            (p.path.as_str(), p.period, p.timeout),
            ("/", Duration::from_secs(2), Duration::from_secs(3))
        );
        assert_eq!(HttpProbe::of(&spec("")), None);
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.0 503 Service Unavailable\r\nx: y"),
            Some(503)
        );
        assert_eq!(status_of(b"HTTP/1.1 302\r\n"), Some(302));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 20"), None);
        assert_eq!(status_of(b""), None);
    }

    /// A server answering 503 until `open` is set, then 200 (as the shop's `/ready` does
    /// until its store is open); it accepts from the start.
    async fn server(open: Arc<AtomicBool>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let asked_ready = buf[..n].starts_with(b"GET /ready ");
                    let status = if asked_ready && open.load(Ordering::SeqCst) {
                        "200 OK"
                    } else if asked_ready {
                        "503 Service Unavailable"
                    } else {
                        "404 Not Found"
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn accepting_connections_is_not_ready_until_the_probe_path_answers_2xx() {
        let open = Arc::new(AtomicBool::new(false));
        let addr = server(open.clone()).await;
        let probe = HttpProbe {
            port: addr.port(),
            path: "/ready".into(),
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        assert!(!probe.check(None, addr).await, "503 counted as ready");
        open.store(true, Ordering::SeqCst);
        assert!(probe.check(None, addr).await);
        let elsewhere = HttpProbe {
            path: "/health".into(),
            ..probe.clone()
        };
        assert!(!elsewhere.check(None, addr).await, "404 counted as ready");
    }

    #[tokio::test]
    async fn a_closed_port_or_a_silent_server_is_not_ready() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = HttpProbe {
            port: addr.port(),
            path: "/ready".into(),
            period: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
        };
        // Accepts (the backlog) but never answers: the probe's timeout ends it.
        assert!(!probe.check(None, addr).await);
        drop(listener);
        assert!(!probe.check(None, addr).await);
    }
}
