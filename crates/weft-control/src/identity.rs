//! Who a proxy is: the bootstrap token it presents, the identity that token names, and the
//! workload certificate the CA issued to its holder.
//!
//! One token names one identity (namespace, service account) and may bind one proxy id.
//! The push stream and the CA agree on it: a proxy may only fetch the config of a registry
//! instance of its token's identity (and of its bound proxy id, if any), and the CA signs
//! only that identity. The shared `--token` of `weft control` admits any proxy to the push
//! stream but names no identity, so it gets no certificate.
//!
//! Certificates are recorded per token: the CA request carries the token only (Istio's
//! shape), and a proxy's hello carries the same token, which links the two whichever
//! comes first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tonic::Status;
use tracing::warn;
use weft_api::pb;
use x509_parser::time::ASN1Time;

use crate::Shared;
use crate::ca::{CaHooks, CertificateAuthority, IssuedCertificate, TokenError, TokenStore};
use crate::state::ProxyState;

/// A certificate as `weft proxy-config <id> secret` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// The SPIFFE ID (the leaf's URI SAN) or, for a root, its subject.
    pub name: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    pub issuer: String,
    /// SHA-256 of the DER, hex.
    pub sha256: String,
}

impl CertificateView {
    fn of(pem: &str) -> Option<(CertificateView, i64)> {
        let cert = crate::ca::certs_from_pem(pem).ok()?.into_iter().next()?;
        let x = cert.x509().ok()?;
        let name = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| x.subject().to_string());
        let view = CertificateView {
            name,
            serial: x.raw_serial_as_string(),
            not_before: rfc3339(x.validity().not_before),
            not_after: rfc3339(x.validity().not_after),
            issuer: x.issuer().to_string(),
            sha256: ring::digest::digest(&ring::digest::SHA256, &cert.der)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        };
        Some((view, x.validity().not_after.timestamp()))
    }
}

/// What the CA last issued to the holder of one token.
#[derive(Debug, Clone)]
pub struct CertRecord {
    pub certificate: CertificateView,
    /// The roots sent with it.
    pub trust_bundle: Vec<CertificateView>,
    /// `not_after` as a Unix time.
    pub expires_unix: i64,
}

/// CA counters, served on `/debug/ca`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaCounters {
    pub issued: u64,
    /// Refused requests by reason (`unknown token`, `identity mismatch`, ...).
    pub refused: BTreeMap<String, u64>,
}

/// Tokens, the CA and its records.
pub(crate) struct IdentityState {
    pub(crate) tokens: Arc<TokenStore>,
    /// Tokens are required even while the store is empty (`--tokens` was given).
    pub(crate) require_tokens: bool,
    pub(crate) ca: Option<Arc<CertificateAuthority>>,
    inner: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    /// By token.
    certs: HashMap<String, CertRecord>,
    /// The token each proxy id last connected with.
    connected: HashMap<String, String>,
    counters: CaCounters,
}

impl IdentityState {
    pub(crate) fn new(
        tokens: Arc<TokenStore>,
        require_tokens: bool,
        ca: Option<Arc<CertificateAuthority>>,
    ) -> Self {
        Self {
            tokens,
            require_tokens,
            ca,
            inner: Mutex::new(Records::default()),
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn counters(&self) -> CaCounters {
        self.records().counters.clone()
    }

    /// The token `proxy_id` connected with, or the one bound to it.
    fn token_of(&self, proxy_id: &str) -> Option<String> {
        let connected = self.records().connected.get(proxy_id).cloned();
        connected.or_else(|| self.tokens.token_of_proxy(proxy_id))
    }

    /// The certificate last issued to `proxy_id`'s token; `Err` when no token is known.
    pub(crate) fn certificate(&self, proxy_id: &str) -> Result<Option<CertRecord>, ()> {
        let token = self.token_of(proxy_id).ok_or(())?;
        Ok(self.records().certs.get(&token).cloned())
    }

    /// The identity (`ns/sa`) `proxy_id`'s token names, if any.
    pub(crate) fn identity_of(&self, proxy_id: &str) -> Option<String> {
        let token = self.token_of(proxy_id)?;
        self.tokens
            .grant(Some(&token))
            .ok()
            .map(|g| g.identity.to_string())
    }

    /// The CA's current trust bundle.
    pub(crate) fn trust_bundle(&self) -> Vec<CertificateView> {
        self.ca
            .as_ref()
            .map(|ca| {
                ca.trust_bundle()
                    .roots_pem()
                    .iter()
                    .filter_map(|p| CertificateView::of(p).map(|(v, _)| v))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Shared {
    /// Decides whether the proxy of `hello` may have the push stream: its token must be
    /// the shared token or name the identity of its registry instance (and its proxy id,
    /// when bound to one). With no token configured at all, every proxy is admitted.
    pub(crate) fn admit(&self, hello: &pb::Hello) -> Result<(), Status> {
        let id = &hello.proxy_id;
        let ids = &self.identity;
        if self.token.as_deref() == Some(hello.token.as_str()) {
            self.note_connected(id, &hello.token);
            return Ok(());
        }
        let grant = match ids.tokens.grant(Some(&hello.token)) {
            Ok(g) => g,
            Err(_) if self.token.is_none() && !ids.require_tokens && ids.tokens.is_empty() => {
                return Ok(());
            }
            Err(e) => {
                self.count_disconnect("bad token");
                let why = match e {
                    TokenError::Missing => "no bootstrap token",
                    _ => "wrong bootstrap token",
                };
                return Err(Status::unauthenticated(format!(
                    "proxy {id}: {why} (pass `weft proxy --token` the token `weft control` \
                     holds for it: --token, --tokens or --write-tokens)"
                )));
            }
        };
        if let Some(bound) = grant.proxy.as_ref().filter(|b| *b != id) {
            self.count_disconnect("token of another proxy");
            return Err(Status::permission_denied(format!(
                "proxy {id}: the bootstrap token was issued for proxy {bound}; a token \
                 entitles only its own proxy"
            )));
        }
        let instance = self
            .state()
            .base_registry
            .instances
            .iter()
            .find(|i| i.proxy_id() == *id)
            .cloned();
        // An unknown proxy id is refused by registration, with the list of known ones.
        if let Some(instance) = instance {
            let sa = match hello.service_account.as_str() {
                "" => instance.service_account.as_str(),
                announced => announced,
            };
            if instance.namespace != grant.identity.namespace
                || sa != grant.identity.service_account
            {
                self.count_disconnect("token of another identity");
                return Err(Status::permission_denied(format!(
                    "proxy {id} runs as {}/{sa}, but its bootstrap token names {}; a token \
                     entitles only its own identity",
                    instance.namespace, grant.identity
                )));
            }
        }
        self.note_connected(id, &hello.token);
        Ok(())
    }

    fn note_connected(&self, proxy_id: &str, token: &str) {
        self.identity
            .records()
            .connected
            .insert(proxy_id.to_owned(), token.to_owned());
    }

    /// The connected proxies, with the expiry of the certificate their token holds.
    pub(crate) fn proxies_view(&self) -> Vec<ProxyState> {
        let mut proxies: Vec<ProxyState> = self.state().proxies.values().cloned().collect();
        let records = self.identity.records();
        for p in &mut proxies {
            if let Some(r) = records
                .connected
                .get(&p.id)
                .and_then(|t| records.certs.get(t))
            {
                p.cert_expiry = Some(r.certificate.not_after.clone());
            }
        }
        proxies
    }
}

impl CaHooks for Shared {
    fn trust_domain(&self) -> Option<String> {
        let objects = self.state().inputs().objects;
        Some(
            weft_config::kinds::istio::MeshConfig::from_objects(&objects)
                .trust_domain()
                .to_owned(),
        )
    }

    fn issued(&self, token: &str, issued: &IssuedCertificate, trust_bundle: &[String]) {
        let Some((certificate, expires_unix)) = issued
            .cert_chain
            .first()
            .and_then(|p| CertificateView::of(p))
        else {
            warn!(identity = %issued.spiffe_id, "cannot read back an issued certificate");
            return;
        };
        let record = CertRecord {
            certificate,
            trust_bundle: trust_bundle
                .iter()
                .filter_map(|p| CertificateView::of(p).map(|(v, _)| v))
                .collect(),
            expires_unix,
        };
        let expiry = record.certificate.not_after.clone();
        let holders: Vec<String> = {
            let mut records = self.identity.records();
            records.counters.issued += 1;
            records.certs.insert(token.to_owned(), record);
            records
                .connected
                .iter()
                .filter(|(_, t)| t.as_str() == token)
                .map(|(p, _)| p.clone())
                .collect()
        };
        let mut st = self.state();
        for p in holders {
            if let Some(p) = st.proxies.get_mut(&p) {
                p.cert_expiry = Some(expiry.clone());
            }
        }
        drop(st);
        self.notify_status();
    }

    fn refused(&self, reason: &'static str) {
        *self
            .identity
            .records()
            .counters
            .refused
            .entry(reason.to_owned())
            .or_default() += 1;
    }
}

/// `2026-01-02T03:04:05Z`.
fn rfc3339(t: ASN1Time) -> String {
    let d = t.to_datetime();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_seconds() {
        let t = ASN1Time::from_timestamp(1_767_323_045).expect("time");
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
    }
}
