//! Shared harness for the HTTP tests: a proxy serving connections on 127.0.0.1 by calling
//! `http::serve_connection` directly (the listener layer is tested on its own).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use weft_api::{Direction, HttpChain, ProxyConfig};
use weft_proxy::runtime::Runtime;
use weft_proxy::{ConnInfo, RuntimeHandle};

pub struct Proxy {
    pub addr: SocketAddr,
    pub rt: RuntimeHandle,
    pub drain: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(config: ProxyConfig, chain: HttpChain) -> Proxy {
        Self::start_with(config, chain, Direction::Inbound).await
    }

    pub async fn start_with(config: ProxyConfig, chain: HttpChain, direction: Direction) -> Proxy {
        let runtime = Runtime::build(config, None).expect("test config builds");
        let rt: RuntimeHandle = Arc::new(ArcSwap::from_pointee(runtime));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (drain, drain_rx) = watch::channel(false);
        let handle = rt.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let conn = ConnInfo {
                    listener: Arc::from("test"),
                    direction,
                    peer,
                    original_dst: addr,
                    local: addr,
                    sni: None,
                    peer_identity: None,
                    local_identity: None,
                };
                let (chain, rt, drain) = (chain.clone(), handle.clone(), drain_rx.clone());
                tokio::spawn(async move {
                    let _ =
                        weft_proxy::http::serve_connection(stream, chain, conn, rt, drain).await;
                });
            }
        });
        Proxy {
            addr,
            rt,
            drain,
            task,
        }
    }

    /// Swaps in a new config the way a reload does.
    pub fn reload(&self, config: ProxyConfig) {
        let current = self.rt.load_full();
        let next = Runtime::build(config, Some(&current)).expect("reload config builds");
        self.rt.store(Arc::new(next));
    }
}
