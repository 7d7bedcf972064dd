//! The flags of `weft proxy --control ADDR`: how the proxy finds and authenticates to its
//! control plane and what it announces about itself. Identity, labels and address default
//! to the proxy's registry entry held by the control plane.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use weft_proxy::xds::{Backoff, XdsOptions};

#[derive(clap::Args)]
pub struct ControlArgs {
    /// Bootstrap token the control plane expects (`weft control --token`).
    #[arg(long, requires = "control")]
    token: Option<String>,
    /// A label to announce (`--label app=cart`, repeatable); default: the registry's.
    #[arg(long = "label", value_name = "KEY=VALUE", requires = "control")]
    labels: Vec<String>,
    /// Service account to announce; default: the registry's.
    #[arg(long, requires = "control")]
    service_account: Option<String>,
    /// The address other workloads reach this instance on; default: the registry's.
    #[arg(long, requires = "control")]
    address: Option<String>,
}

impl ControlArgs {
    pub fn xds_options(&self, control: &str, id: &str) -> anyhow::Result<XdsOptions> {
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let Some((k, v)) = l.split_once('=') else {
                bail!("--label {l}: write KEY=VALUE");
            };
            labels.insert(k.to_string(), v.to_string());
        }
        let address = if control.contains("://") {
            control.to_string()
        } else {
            format!("http://{control}")
        };
        Ok(XdsOptions {
            address,
            proxy_id: id.to_string(),
            token: self.token.clone().unwrap_or_default(),
            labels,
            service_account: self.service_account.clone().unwrap_or_default(),
            workload_address: self.address.clone().unwrap_or_default(),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(15)),
        })
    }
}
