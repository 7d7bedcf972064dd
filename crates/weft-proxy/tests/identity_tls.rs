//! Mutual TLS from workload identities: each side sees the other's SPIFFE ID; a server
//! identity the client does not expect, or a certificate from another root, fails.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData, SanType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use weft_proxy::identity::{
    Identity, PeerIdentities, client_config, peer_spiffe_id, server_config,
};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let root_pem = params.self_signed(&key).expect("root").pem();
        Self {
            issuer: Issuer::new(params, key),
            root_pem,
        }
    }

    fn issue(&self, spiffe: &str, bundle: &[&str]) -> Identity {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(spiffe.try_into().expect("ia5"))];
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(3600)).into();
        let leaf = params.signed_by(&key, &self.issuer).expect("leaf");
        let bundle: Vec<String> = bundle.iter().map(|s| (*s).to_owned()).collect();
        Identity::from_reply(
            &[leaf.pem(), self.root_pem.clone()],
            &bundle,
            key.serialize_der(),
            key.der_bytes(),
        )
        .expect("identity")
    }
}

const WEB: &str = "spiffe://cluster.local/ns/shop/sa/web";
const DB: &str = "spiffe://cluster.local/ns/shop/sa/db";

/// Handshake over an in-memory pipe; returns (client's view of the server, server's view of
/// the client) or the first error.
async fn handshake(
    client: &Identity,
    server: &Identity,
    peers: PeerIdentities,
) -> Result<(Option<String>, Option<String>), String> {
    let connector = TlsConnector::from(Arc::new(
        client_config(client, peers).map_err(|e| e.to_string())?,
    ));
    let acceptor = TlsAcceptor::from(Arc::new(server_config(server).map_err(|e| e.to_string())?));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let server_side = tokio::spawn(async move {
        let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().and_then(peer_spiffe_id);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let name = rustls::pki_types::ServerName::try_from("db.shop.svc").expect("name");
    let client_result = async {
        let mut tls = connector
            .connect(name, a)
            .await
            .map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().and_then(peer_spiffe_id);
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(&buf, b"ping");
        Ok::<_, String>(peer)
    }
    .await;
    let server_result = server_side.await.expect("server task");
    Ok((client_result?, server_result?))
}

#[tokio::test]
async fn mutual_tls_with_spiffe_ids() {
    let ca = Ca::new();
    let web = ca.issue(WEB, &[&ca.root_pem]);
    let db = ca.issue(DB, &[&ca.root_pem]);
    let (server_id, client_id) = handshake(&web, &db, PeerIdentities::OneOf(vec![DB.to_owned()]))
        .await
        .expect("handshake");
    assert_eq!(server_id.as_deref(), Some(DB));
    assert_eq!(client_id.as_deref(), Some(WEB));
    handshake(&web, &db, PeerIdentities::Any)
        .await
        .expect("any identity");
}

#[tokio::test]
async fn unexpected_server_identity_is_refused() {
    let ca = Ca::new();
    let web = ca.issue(WEB, &[&ca.root_pem]);
    let db = ca.issue(DB, &[&ca.root_pem]);
    let err = handshake(
        &web,
        &db,
        PeerIdentities::OneOf(vec!["spiffe://cluster.local/ns/shop/sa/cache".to_owned()]),
    )
    .await
    .expect_err("wrong server identity");
    assert!(err.contains("sa/db"), "{err}");
}

#[tokio::test]
async fn other_roots_are_refused_and_two_root_bundles_bridge_a_rotation() {
    let old = Ca::new();
    let new = Ca::new();
    let web_old = old.issue(WEB, &[&old.root_pem]);
    let db_new = new.issue(DB, &[&new.root_pem]);
    // Each trusts only its own root: the handshake fails.
    assert!(
        handshake(&web_old, &db_new, PeerIdentities::Any)
            .await
            .is_err()
    );
    assert!(
        handshake(&db_new, &web_old, PeerIdentities::Any)
            .await
            .is_err()
    );
    // During a rotation both hold both roots: leaves from either root are accepted.
    let web_old = old.issue(WEB, &[&old.root_pem, &new.root_pem]);
    let db_new = new.issue(DB, &[&new.root_pem, &old.root_pem]);
    handshake(&web_old, &db_new, PeerIdentities::Any)
        .await
        .expect("client under the old root, server under the new");
    handshake(&db_new, &web_old, PeerIdentities::Any)
        .await
        .expect("client under the new root, server under the old");
}

/// A connection made with the old certificate keeps working after the rotation; new
/// connections present the new certificate.
#[tokio::test]
async fn rotation_keeps_open_connections() {
    let ca = Ca::new();
    let web = ca.issue(WEB, &[&ca.root_pem]);
    let connector = TlsConnector::from(Arc::new(
        client_config(&web, PeerIdentities::OneOf(vec![DB.to_owned()])).expect("client"),
    ));
    let connect = |acceptor: TlsAcceptor| {
        let connector = connector.clone();
        async move {
            let (a, b) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(b).await else {
                    return;
                };
                let mut buf = [0u8; 4];
                while tls.read_exact(&mut buf).await.is_ok() {
                    if tls.write_all(&buf).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
            let name = rustls::pki_types::ServerName::try_from("db.shop.svc").expect("name");
            connector.connect(name, a).await.expect("handshake")
        }
    };
    async fn echo(tls: &mut tokio_rustls::client::TlsStream<tokio::io::DuplexStream>) {
        tls.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
    }

    let db_v1 = ca.issue(DB, &[&ca.root_pem]);
    let mut old = connect(TlsAcceptor::from(Arc::new(
        server_config(&db_v1).expect("server"),
    )))
    .await;
    echo(&mut old).await;

    let db_v2 = ca.issue(DB, &[&ca.root_pem]);
    let mut new = connect(TlsAcceptor::from(Arc::new(
        server_config(&db_v2).expect("server"),
    )))
    .await;
    echo(&mut new).await;
    echo(&mut old).await;

    let leaf = |tls: &tokio_rustls::client::TlsStream<tokio::io::DuplexStream>| {
        tls.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec()
    };
    assert_eq!(leaf(&old), db_v1.cert_chain[0]);
    assert_eq!(leaf(&new), db_v2.cert_chain[0]);
}
