//! Mesh mTLS microbenchmarks, with the proxy's own rustls configs (`identity::server_config`
//! / `client_config`, TLS 1.3, client certificate required, SPIFFE check, ALPN `h2`) and
//! certificates from the testkit's `FakeCa` (ECDSA P-256):
//!
//! - `mtls_handshake/full_in_memory`: one full mutual handshake (client resumption off),
//!   both ends on one thread over an in-memory pipe: the summed TLS + verification cost;
//! - `mtls_handshake/full_loopback_tcp`: the same over a new loopback TCP connection, the
//!   server on another task, until the server has verified the client and answered a byte;
//! - `mtls_handshake/resumed_loopback_tcp`: as the proxy's client config stands (rustls's
//!   default session resumption), so after the first round every handshake resumes;
//! - `mtls_throughput/{plaintext_tcp,mtls}`: 1 MiB in 64 KiB writes over one established
//!   connection, acknowledged by the reader (plaintext is the baseline);
//! - `mesh_tunnel/{sequential,concurrent_32}`: HTTP requests through the mesh tunnel:
//!   the proxy's tunnel client (`upstream::Mesh::send_http`, one mTLS HTTP/2 connection)
//!   to a server sidecar (`app::build`, tunnel listener → inbound HTTP chain) in front of
//!   the testkit echo app over HTTP/1.1. This is the whole server-side path, not the
//!   tunnel alone.
//!
//! Run: `cargo bench -p weft-proxy --bench mtls` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::BodyExt;
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_api::ProxyConfig;
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::http::body;
use weft_proxy::identity::{
    Identity, IdentitySource, IdentityStats, PeerIdentities, client_config, server_config,
};
use weft_proxy::source::StaticSource;
use weft_proxy::upstream::{Mesh, MeshPeer, Proto};
use weft_testkit::ca::FakeCa;
use weft_testkit::echo::EchoServer;

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 16;
const CONCURRENT: usize = 32;
/// The endpoint the tunnelled requests name; the server sidecar maps its port to
/// `inbound|3002`.
const TARGET: &str = "127.0.0.1:3002";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A workload certificate for `sa` as the proxy holds it.
fn identity(ca: &FakeCa, sa: &str) -> Arc<Identity> {
    let issued = ca.issue_spiffe(&ca.spiffe_id("bench", sa), Duration::from_secs(3600));
    let identity = Identity::from_reply(
        &[issued.cert_pem],
        &[ca.root_pem().to_string()],
        issued.key_pkcs8,
        &issued.public_key,
    )
    .expect("valid test identity");
    Arc::new(identity)
}

struct Tls {
    /// As the proxy builds it: rustls's default session resumption on.
    connector: TlsConnector,
    /// Resumption off: every handshake is a full one (certificates sent and verified).
    full_connector: TlsConnector,
    acceptor: TlsAcceptor,
    name: ServerName<'static>,
}

/// The tunnel's TLS setup: the client accepts only the server's SPIFFE ID.
fn tls(ca: &FakeCa) -> Tls {
    let (client, server) = (identity(ca, "client"), identity(ca, "server"));
    let mut client_cfg = client_config(
        &client,
        PeerIdentities::OneOf(vec![server.spiffe_id.clone()]),
    )
    .expect("client config");
    client_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut server_cfg = server_config(&server).expect("server config");
    server_cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut full_cfg = client_cfg.clone();
    full_cfg.resumption = rustls::client::Resumption::disabled();
    Tls {
        connector: TlsConnector::from(Arc::new(client_cfg)),
        full_connector: TlsConnector::from(Arc::new(full_cfg)),
        acceptor: TlsAcceptor::from(Arc::new(server_cfg)),
        name: ServerName::try_from("server.bench").expect("server name"),
    }
}

fn handshake(c: &mut Criterion) {
    let rt = runtime();
    let ca = FakeCa::new("cluster.local");
    let tls = tls(&ca);
    let mut group = c.benchmark_group("mtls_handshake");
    group.bench_function("full_in_memory", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (client_io, server_io) = tokio::io::duplex(64 * 1024);
                let (client, server) = tokio::join!(
                    tls.full_connector.connect(tls.name.clone(), client_io),
                    tls.acceptor.accept(server_io)
                );
                black_box((client.expect("client side"), server.expect("server side")));
            })
        })
    });

    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.acceptor.clone();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let _ = stream.write_all(b"k").await;
                    let _ = stream.flush().await;
                }
            });
        }
    });
    // The server answers one byte after its side of the handshake (client certificate
    // verified); reading it also stores the session tickets sent before it.
    for (name, connector) in [
        ("full_loopback_tcp", &tls.full_connector),
        ("resumed_loopback_tcp", &tls.connector),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let tcp = TcpStream::connect(addr).await.expect("connect");
                    tcp.set_nodelay(true).expect("nodelay");
                    let mut stream = connector
                        .connect(tls.name.clone(), tcp)
                        .await
                        .expect("handshake");
                    let mut ack = [0u8; 1];
                    stream.read_exact(&mut ack).await.expect("server answered");
                    black_box(stream);
                })
            })
        });
    }
    group.finish();
}

/// The reading end: acknowledges every `CHUNK * CHUNKS` bytes with one byte.
async fn sink<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = vec![0u8; CHUNK * CHUNKS];
    while stream.read_exact(&mut buf).await.is_ok() {
        if stream.write_all(b"k").await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// One round of the throughput bench: 1 MiB out, one acknowledgement back.
async fn send_round<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, chunk: &[u8]) {
    for _ in 0..CHUNKS {
        stream.write_all(chunk).await.expect("write");
    }
    stream.flush().await.expect("flush");
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await.expect("acknowledged");
}

fn throughput(c: &mut Criterion) {
    let rt = runtime();
    let ca = FakeCa::new("cluster.local");
    let tls = tls(&ca);
    let chunk = vec![0x5au8; CHUNK];
    let mut group = c.benchmark_group("mtls_throughput");
    group.throughput(Throughput::Bytes((CHUNK * CHUNKS) as u64));

    let (mut plain, mut secure) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tls.acceptor.clone();
        tokio::spawn(async move {
            // First connection plaintext, second mTLS.
            if let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(sink(tcp));
            }
            if let Ok((tcp, _)) = listener.accept().await
                && let Ok(stream) = acceptor.accept(tcp).await
            {
                tokio::spawn(sink(stream));
            }
        });
        let plain = TcpStream::connect(addr).await.expect("connect");
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let secure = tls
            .connector
            .connect(tls.name.clone(), tcp)
            .await
            .expect("handshake");
        (plain, secure)
    });
    group.bench_function("plaintext_tcp", |b| {
        b.iter(|| rt.block_on(send_round(&mut plain, &chunk)))
    });
    group.bench_function("mtls", |b| {
        b.iter(|| rt.block_on(send_round(&mut secure, &chunk)))
    });
    group.finish();
}

/// A server sidecar: the tunnel listener dispatching target port 3002 to an inbound HTTP
/// chain that forwards to `app` over HTTP/1.1.
fn server_sidecar_config(app: SocketAddr) -> ProxyConfig {
    let listener = |name: &str, chain: serde_json::Value| {
        json!({
            "name": name,
            "address": "127.0.0.1:0",
            "direction": "inbound",
            "capture": "explicit",
            "chains": [chain],
            "fallback": {"blackhole": {"reason": format!("no chain on {name}")}},
        })
    };
    serde_json::from_value(json!({
        "version": "bench-1",
        "listeners": [
            listener("inbound|3002", json!({
                "name": "inbound|3002",
                "protocol": {"http": {"route_table": "inbound|3002"}},
            })),
            listener("tunnel", json!({
                "name": "tunnel",
                "protocol": {"tunnel": {"inbound_listeners": [
                    {"port": 3002, "listener": "inbound|3002"},
                ]}},
            })),
        ],
        "route_tables": [{
            "name": "inbound|3002",
            "virtual_hosts": [{"name": "any", "domains": ["*"], "routes": [{
                "name": "all",
                "matches": [],
                "action": {"forward": {"clusters": [{"cluster": "inbound|3002||", "weight": 1}]}},
            }]}],
        }],
        "clusters": [{
            "name": "inbound|3002||",
            "discovery": "static",
            "endpoints": [{"address": app.to_string()}],
            "lb": "round_robin",
            "connect_timeout": "2s",
            "limits": {"max_connections": 10000, "max_pending_requests": 10000,
                       "max_requests": 10000, "max_retries": 3},
            "protocol": "http1",
            "tls": "disabled",
        }],
    }))
    .expect("bench config is a valid ProxyConfig")
}

/// The sidecar and the sender of its certificate watch (kept open while it runs).
type Sidecar = (Running, tokio::sync::watch::Sender<Option<Arc<Identity>>>);

async fn start_server_sidecar(app: SocketAddr, identity: Arc<Identity>) -> Sidecar {
    let (tx, rx) = tokio::sync::watch::channel(Some(identity));
    let options = ProxyOptions {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        identity: Some(IdentitySource {
            rx,
            stats: IdentityStats::default(),
        }),
        ..ProxyOptions::default()
    };
    let running = app::build(options, StaticSource::new(server_sidecar_config(app)))
        .await
        .expect("server sidecar starts");
    let mut status = running.status();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.ready))
        .await
        .expect("server sidecar ready in time")
        .expect("status channel open");
    (running, tx)
}

/// One GET through the tunnel; panics unless the echo app answered 200.
async fn tunnel_get(mesh: &Mesh, peer: &MeshPeer) {
    let req = http::Request::get("/bench")
        .header(http::header::HOST, "svc.bench:3002")
        .body(body::empty())
        .expect("request");
    let resp = mesh
        .send_http(peer, TARGET, req, Proto::Http1, Duration::from_secs(2))
        .await
        .expect("tunnelled request");
    assert_eq!(resp.status(), 200);
    black_box(resp.into_body().collect().await.expect("body").to_bytes());
}

fn mesh_tunnel(c: &mut Criterion) {
    let rt = runtime();
    let ca = FakeCa::new("cluster.local");
    let (client, server) = (identity(&ca, "client"), identity(&ca, "server"));
    let (_app, sidecar, _client_cert, mesh, peer) = rt.block_on(async {
        let app = EchoServer::start("bench").await.expect("echo app");
        let peer = MeshPeer {
            tunnel: String::new(),
            identity: Some(server.spiffe_id.clone()),
        };
        let sidecar = start_server_sidecar(app.addr, server).await;
        let tunnel = sidecar.0.listener_addr("tunnel").expect("tunnel bound");
        let peer = MeshPeer {
            tunnel: tunnel.to_string(),
            ..peer
        };
        let (client_cert, rx) = tokio::sync::watch::channel(Some(client));
        let mesh = Arc::new(Mesh::new(Some(rx)));
        // Connect once: the benches measure requests on the established tunnel.
        tunnel_get(&mesh, &peer).await;
        (app, sidecar, client_cert, mesh, peer)
    });
    let mut group = c.benchmark_group("mesh_tunnel");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.iter(|| rt.block_on(tunnel_get(&mesh, &peer)))
    });
    group.throughput(Throughput::Elements(CONCURRENT as u64));
    group.bench_function("concurrent_32", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..CONCURRENT {
                    let (mesh, peer) = (mesh.clone(), peer.clone());
                    tasks.spawn(async move { tunnel_get(&mesh, &peer).await });
                }
                while let Some(done) = tasks.join_next().await {
                    done.expect("request task");
                }
            })
        })
    });
    group.finish();
    assert_eq!(
        mesh.stats
            .connections_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "every request shared one tunnel connection"
    );
    drop(sidecar);
}

criterion_group!(benches, handshake, throughput, mesh_tunnel);
criterion_main!(benches);
