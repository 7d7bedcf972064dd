//! The config-push protocol (`proto/weft/v1/discovery.proto`): generated prost messages and
//! the tonic `Discovery` client and server, plus helpers to move weft-api types in and out
//! of [`Resource`] bodies.
//!
//! Bodies are the serde JSON of [`crate::Listener`], [`crate::RouteTable`] and
//! [`crate::Cluster`]: the data-plane model stays defined once, in Rust; only the envelope is
//! protobuf (see the comment at the top of the .proto file).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("weft.v1");

use serde::Serialize;
use serde::de::DeserializeOwned;

/// FNV-1a over `bytes`, as 16 hex digits: the resource version.
pub fn content_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl ResourceKey {
    pub fn new(kind: ResourceType, name: impl Into<String>) -> ResourceKey {
        ResourceKey {
            r#type: kind as i32,
            name: name.into(),
        }
    }

    /// `listener/NAME`, `route_table/NAME`, `cluster/NAME` (for messages and tables).
    pub fn display(&self) -> String {
        let kind = match ResourceType::try_from(self.r#type) {
            Ok(ResourceType::Listener) => "listener",
            Ok(ResourceType::RouteTable) => "route_table",
            Ok(ResourceType::Cluster) => "cluster",
            _ => "unknown",
        };
        format!("{kind}/{}", self.name)
    }
}

impl Resource {
    /// Encode a weft-api value as a resource whose version is the hash of its JSON.
    pub fn encode<T: Serialize>(
        kind: ResourceType,
        name: &str,
        value: &T,
    ) -> Result<Resource, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        Ok(Resource {
            key: Some(ResourceKey::new(kind, name)),
            version: content_version(&body),
            body: body.into(),
        })
    }

    /// Decode the body as the weft-api type `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_versions() {
        let cluster = crate::Origin {
            kind: "DestinationRule".into(),
            namespace: "shop".into(),
            name: "c".into(),
        };
        let r = Resource::encode(ResourceType::Cluster, "c", &cluster).unwrap();
        assert_eq!(r.decode::<crate::Origin>().unwrap(), cluster);
        let again = Resource::encode(ResourceType::Cluster, "c", &cluster).unwrap();
        assert_eq!(r.version, again.version);
        assert_eq!(r.key.as_ref().unwrap().display(), "cluster/c");
    }
}
