//! Filter chain selection: which chain of a listener takes a connection, by destination
//! port, destination address (IP or CIDR) and TLS SNI. First match in order wins, as the
//! compiler emits chains most specific first.

use std::net::{IpAddr, SocketAddr};

use weft_api::{ChainMatch, FilterChain};

use super::detect::server_name_matches;

/// The chains whose destination port and address accept `dst`, in order.
pub fn candidates(chains: &[FilterChain], dst: SocketAddr) -> Vec<&FilterChain> {
    chains
        .iter()
        .filter(|c| destination_matches(&c.r#match, dst))
        .collect()
}

/// Whether telling the candidates apart needs the SNI (so the ClientHello must be read
/// before a chain is chosen).
pub fn needs_sni(candidates: &[&FilterChain]) -> bool {
    candidates
        .iter()
        .any(|c| !c.r#match.server_names.is_empty())
}

/// The first candidate whose server names accept `sni` (a chain with server names never
/// takes a connection without SNI).
pub fn select<'a>(candidates: &[&'a FilterChain], sni: Option<&str>) -> Option<&'a FilterChain> {
    candidates
        .iter()
        .copied()
        .find(|c| sni_matches(&c.r#match.server_names, sni))
}

/// Empty `names` accept anything; otherwise the SNI must match one of them.
pub fn sni_matches(names: &[String], sni: Option<&str>) -> bool {
    if names.is_empty() {
        return true;
    }
    sni.is_some_and(|sni| names.iter().any(|n| server_name_matches(n, sni)))
}

fn destination_matches(m: &ChainMatch, dst: SocketAddr) -> bool {
    if m.destination_port.is_some_and(|p| p != dst.port()) {
        return false;
    }
    m.destination_addresses.is_empty()
        || m.destination_addresses
            .iter()
            .any(|a| address_matches(a, dst.ip()))
}

/// `10.0.0.5` or `10.0.0.0/24` (IPv4 or IPv6). An entry that does not parse matches
/// nothing: the compiler emits only valid ones, and matching less is the safe failure.
pub fn address_matches(pattern: &str, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    let (addr, prefix) = match pattern.split_once('/') {
        Some((a, p)) => match p.parse::<u8>() {
            Ok(p) => (a, Some(p)),
            Err(_) => return false,
        },
        None => (pattern, None),
    };
    let Ok(net) = addr.parse::<IpAddr>().map(canonical) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
            u128::from(net.to_bits()),
            u128::from(ip.to_bits()),
            32,
            prefix,
        ),
        (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(net.to_bits(), ip.to_bits(), 128, prefix),
        _ => false,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports) compare
/// as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(net: u128, ip: u128, bits: u8, prefix: Option<u8>) -> bool {
    let prefix = prefix.unwrap_or(bits);
    if prefix > bits {
        return false;
    }
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::{ChainProtocol, TcpChain};

    fn chain(name: &str, m: ChainMatch) -> FilterChain {
        FilterChain {
            name: name.into(),
            r#match: m,
            mtls: None,
            protocol: ChainProtocol::Tcp(TcpChain::default()),
        }
    }

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(address_matches("10.0.0.0/24", ip("10.0.0.77")));
        assert!(!address_matches("10.0.0.0/24", ip("10.0.1.1")));
        assert!(address_matches("10.0.0.5", ip("10.0.0.5")));
        assert!(address_matches("10.0.0.5", ip("::ffff:10.0.0.5")));
        assert!(address_matches("0.0.0.0/0", ip("8.8.8.8")));
        assert!(address_matches("fd00::/8", ip("fd12::1")));
        assert!(!address_matches("fd00::/8", ip("10.0.0.1")));
        assert!(!address_matches("10.0.0.0/33", ip("10.0.0.1")));
        assert!(!address_matches("garbage", ip("10.0.0.1")));
    }

    #[test]
    fn first_matching_chain_wins() {
        let chains = vec![
            chain(
                "tls-api",
                ChainMatch {
                    destination_port: Some(443),
                    server_names: vec!["*.api.example".into()],
                    ..Default::default()
                },
            ),
            chain(
                "db",
                ChainMatch {
                    destination_port: Some(5432),
                    destination_addresses: vec!["10.1.0.0/16".into()],
                    ..Default::default()
                },
            ),
            chain(
                "any-443",
                ChainMatch {
                    destination_port: Some(443),
                    ..Default::default()
                },
            ),
        ];
        let dst = |s: &str| s.parse::<SocketAddr>().unwrap();
        let c = candidates(&chains, dst("10.0.0.1:443"));
        assert!(needs_sni(&c));
        assert_eq!(select(&c, Some("v1.api.example")).unwrap().name, "tls-api");
        assert_eq!(select(&c, Some("other")).unwrap().name, "any-443");
        assert_eq!(select(&c, None).unwrap().name, "any-443");
        let c = candidates(&chains, dst("10.1.2.3:5432"));
        assert!(!needs_sni(&c));
        assert_eq!(select(&c, None).unwrap().name, "db");
        assert!(candidates(&chains, dst("10.2.0.1:5432")).is_empty());
    }
}
