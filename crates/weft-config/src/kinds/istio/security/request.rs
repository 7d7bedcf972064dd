//! RequestAuthentication: which JWTs a workload accepts.

use serde::Deserialize;

use crate::kinds::common::{Duration, PolicyTargetReference, WorkloadSelector};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RequestAuthentication {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JwtRule {
    /// Must equal the token's `iss` claim.
    pub issuer: String,
    /// Any-of; empty means no audience check.
    pub audiences: Vec<String>,
    /// Where to fetch the JWKS (http or https). Absent with no `jwks`: OIDC discovery.
    pub jwks_uri: Option<String>,
    /// Inline JWKS (JSON text).
    pub jwks: Option<String>,
    /// Token locations; by default `Authorization: Bearer` then the `access_token` param.
    pub from_headers: Vec<JwtHeader>,
    pub from_params: Vec<String>,
    pub from_cookies: Vec<String>,
    /// Header to receive the base64 payload of a verified token.
    pub output_payload_to_header: Option<String>,
    /// Keep the token in the request forwarded upstream (default false: stripped).
    pub forward_original_token: bool,
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Claims whose string value is split on spaces (`scope` and `permission` always are).
    pub space_delimited_claims: Vec<String>,
    /// JWKS fetch timeout (default 5s).
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JwtHeader {
    pub name: String,
    /// Prefix to strip (`"Bearer "`); a token without it is invalid.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClaimToHeader {
    pub header: String,
    pub claim: String,
}

impl JwtRule {
    /// The JWKS fetch timeout, Istio's default 5s when unset.
    pub fn timeout_or_default(&self) -> std::time::Duration {
        self.timeout
            .map(|d| d.as_std())
            .unwrap_or(std::time::Duration::from_secs(5))
    }
}
