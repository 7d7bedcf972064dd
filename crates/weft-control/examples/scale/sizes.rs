//! `scale sizes [--scoped] ...`: what one proxy's config is made of (resources by type,
//! their encoded bytes, the largest of each), to see where push bytes go.

use std::collections::BTreeMap;

use weft_api::pb::{Resource, ResourceType};
use weft_compile::Snapshot;

use crate::mesh;

pub fn sizes(shape: mesh::Shape) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    mesh::write(&shape, dir.path())?;
    let files: Vec<_> = std::fs::read_dir(dir.path().join("config"))?
        .filter_map(|e| Some(e.ok()?.path()))
        .collect();
    let bundle = weft_config::Bundle::load_paths(&files);
    let registry = weft_compile::load_registry(&dir.path().join("registry.yaml"))
        .map_err(|d| d.message.clone())?;
    let snapshot = Snapshot::new(&bundle.objects);
    let (id, _) = shape.proxy_ids().into_iter().next().ok_or("no proxies")?;
    let config = weft_compile::compile(&snapshot, &registry, &id)?;
    let mut resources = Vec::new();
    for l in &config.listeners {
        resources.push(Resource::encode(ResourceType::Listener, &l.name, l)?);
    }
    for t in &config.route_tables {
        resources.push(Resource::encode(ResourceType::RouteTable, &t.name, t)?);
    }
    for c in &config.clusters {
        resources.push(Resource::encode(ResourceType::Cluster, &c.name, c)?);
    }
    let mut by_type: BTreeMap<i32, (usize, usize, Option<&Resource>)> = BTreeMap::new();
    for r in &resources {
        let kind = r.key.as_ref().map_or(0, |k| k.r#type);
        let e = by_type.entry(kind).or_default();
        e.0 += 1;
        e.1 += r.body.len();
        if e.2.is_none_or(|m| m.body.len() < r.body.len()) {
            e.2 = Some(r);
        }
    }
    println!("proxy {id}");
    for (kind, (n, bytes, largest)) in by_type {
        let name = ResourceType::try_from(kind).map_or("?", |k| k.as_str_name());
        println!("{name}: {n} resources, {bytes} bytes");
        if let Some(r) = largest {
            println!("  largest: {}", String::from_utf8_lossy(&r.body));
        }
    }
    Ok(())
}
