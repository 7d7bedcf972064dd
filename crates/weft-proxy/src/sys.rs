//! Socket options the standard library does not expose, through `nix` (no `unsafe` here).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;

/// The destination a connection was addressed to before iptables REDIRECT/TPROXY sent it to
/// the proxy (`SO_ORIGINAL_DST`, or `IP6T_SO_ORIGINAL_DST` for IPv6 sockets).
///
/// On a socket that was not redirected, Linux answers with the local address (or an error,
/// `ENOENT`, when conntrack has no entry), so callers fall back to the local address.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn original_dst<S: AsFd>(socket: &S, local: SocketAddr) -> io::Result<SocketAddr> {
    use nix::sys::socket::{SockaddrIn, SockaddrIn6, getsockopt, sockopt};

    let addr = if local.is_ipv4() {
        SocketAddr::from(SockaddrIn::from(getsockopt(socket, sockopt::OriginalDst)?))
    } else {
        SocketAddr::from(SockaddrIn6::from(getsockopt(
            socket,
            sockopt::Ip6tOriginalDst,
        )?))
    };
    Ok(addr)
}

/// Elsewhere there is no transparent capture: the original destination is the local address.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn original_dst<S: AsFd>(_socket: &S, local: SocketAddr) -> io::Result<SocketAddr> {
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a REDIRECT rule there is no conntrack NAT entry: the call must not panic and
    /// either fails or reports the address actually dialled.
    #[tokio::test]
    async fn original_dst_without_redirect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        match original_dst(&server, addr) {
            Ok(dst) => assert_eq!(dst, addr),
            Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
        }
    }
}
