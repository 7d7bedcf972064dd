//! AuthorizationPolicy: which requests reach a workload.

use serde::Deserialize;

use crate::kinds::common::{PolicyTargetReference, WorkloadSelector};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthorizationPolicy {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    /// `None` when absent: the policy never matches ("allow nothing" with ALLOW). An empty
    /// rule `[{}]` matches everything.
    pub rules: Option<Vec<Rule>>,
    pub action: AuthzAction,
    /// The extension provider, only with `action: CUSTOM`.
    pub provider: Option<ExtensionProviderRef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

impl AuthzAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
            AuthzAction::Custom => "CUSTOM",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExtensionProviderRef {
    pub name: String,
}

/// A match needs one `from` AND one `to` AND every `when`; an omitted list matches anything.
/// `Some(vec![])` (written `from: []`) is kept apart from absent so validation can reject it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rule {
    pub from: Option<Vec<RuleFrom>>,
    pub to: Option<Vec<RuleTo>>,
    pub when: Vec<Condition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleFrom {
    pub source: Option<Source>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleTo {
    pub operation: Option<Operation>,
}

/// Peer identity attributes. Fields are AND'ed, values of one field OR'ed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub service_accounts: Vec<String>,
    pub not_service_accounts: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
    pub trust_domains: Vec<String>,
    pub not_trust_domains: Vec<String>,
}

/// Request attributes. `hosts`, `methods` and `paths` are HTTP-only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

impl Source {
    /// Whether no field is set (an empty source is rejected).
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }

    /// Every list with its YAML field name, for checks that treat them alike.
    pub fn fields(&self) -> [(&'static str, &Vec<String>); 14] {
        [
            ("principals", &self.principals),
            ("notPrincipals", &self.not_principals),
            ("requestPrincipals", &self.request_principals),
            ("notRequestPrincipals", &self.not_request_principals),
            ("namespaces", &self.namespaces),
            ("notNamespaces", &self.not_namespaces),
            ("serviceAccounts", &self.service_accounts),
            ("notServiceAccounts", &self.not_service_accounts),
            ("ipBlocks", &self.ip_blocks),
            ("notIpBlocks", &self.not_ip_blocks),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
            ("trustDomains", &self.trust_domains),
            ("notTrustDomains", &self.not_trust_domains),
        ]
    }
}

impl Operation {
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }

    pub fn fields(&self) -> [(&'static str, &Vec<String>); 8] {
        [
            ("hosts", &self.hosts),
            ("notHosts", &self.not_hosts),
            ("ports", &self.ports),
            ("notPorts", &self.not_ports),
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
            ("paths", &self.paths),
            ("notPaths", &self.not_paths),
        ]
    }
}
