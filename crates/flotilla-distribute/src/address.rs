//! Refusing private addresses without a DNS-rebinding gap.
//!
//! The check happens where the address is chosen: FTP connects to the very addresses it checked, and the
//! HTTP/S3 client resolves names through [`GuardedResolver`], which refuses private answers at connect time.
//! IP-literal hosts never reach a resolver, so callers check them with [`resolve_checked`] first.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::DeliveryError;
use crate::error::ErrorContext;

/// A host resolved to an address deliveries may not reach.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to {address}, a private address")]
pub struct PrivateAddressRefused {
    /// The host name as configured.
    pub host: String,
    /// The refused address.
    pub address: IpAddr,
}

/// The AWS/GCP/Azure instance metadata address.
pub const METADATA_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Whether deliveries must not reach `ip` unless the target allows private addresses: loopback, RFC 1918,
/// link-local (including the metadata address), unique-local, unspecified, carrier-grade NAT, broadcast,
/// multicast, and IPv4 addresses embedded in IPv6 (mapped, NAT64) that are any of these.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip == METADATA_ADDRESS
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    let segments = ip.segments();
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if nat64 {
        let [.., hi, lo] = segments;
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        return is_private_v4(Ipv4Addr::new(a, b, c, d));
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || ip.is_multicast()
        || (segments[0] & 0xffc0) == 0xfec0
}

/// Why a host could not be used.
#[derive(Debug)]
pub enum ResolveError {
    /// The host resolved to a private address.
    Private(PrivateAddressRefused),
    /// Resolution failed or returned nothing.
    Failed(std::io::Error),
}

/// Resolves `host:port` and returns every address, refusing the host when any address is private and
/// `allow_private` is false. IP literals (also `[v6]`) are checked without DNS.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(ResolveError::Failed)?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(ResolveError::Failed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no addresses"),
        )));
    }
    if !allow_private && let Some(private) = addrs.iter().find(|addr| is_private(addr.ip())) {
        return Err(ResolveError::Private(PrivateAddressRefused {
            host: host.to_owned(),
            address: private.ip(),
        }));
    }
    Ok(addrs)
}

/// A `reqwest` resolver that refuses names resolving to private addresses, so the address checked is the
/// address connected to.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            match resolve_checked(name.as_str(), 0, false).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(ResolveError::Private(refused)) => Err(Box::new(refused) as _),
                Err(ResolveError::Failed(e)) => Err(Box::new(e) as _),
            }
        })
    }
}

/// Finds a [`PrivateAddressRefused`] anywhere in an error's chain of sources.
pub fn find_refusal<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a PrivateAddressRefused> {
    std::iter::successors(Some(error), |e| (*e).source()).find_map(|e| e.downcast_ref())
}

/// Resolves a target's host for a direct connection, mapping refusals and failures to delivery errors.
pub(crate) async fn resolve_for_target(
    errors: ErrorContext<'_>,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, DeliveryError> {
    resolve_checked(host, port, allow_private)
        .await
        .map_err(|e| match e {
            ResolveError::Private(refused) => errors.private(&refused),
            ResolveError::Failed(e) => {
                errors.unavailable(format!("cannot resolve {host}: {e}"), Some(Box::new(e)))
            }
        })
}

/// Checks an IP-literal host (which never reaches [`GuardedResolver`]); host names pass through to it.
pub(crate) async fn check_literal_host(
    errors: ErrorContext<'_>,
    host: &str,
    allow_private: bool,
) -> Result<(), DeliveryError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>().is_ok() {
        resolve_for_target(errors, host, 0, allow_private).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn literals_and_localhost_are_refused_unless_allowed() {
        for host in ["127.0.0.1", "[::1]", "localhost"] {
            match resolve_checked(host, 80, false).await {
                Err(ResolveError::Private(refused)) => assert!(is_private(refused.address)),
                other => panic!("{host}: {other:?}"),
            }
            assert!(!resolve_checked(host, 80, true).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn public_literals_pass_without_dns() {
        let addrs = resolve_checked("8.8.8.8", 443, false).await.unwrap();
        assert_eq!(addrs, ["8.8.8.8:443".parse().unwrap()]);
    }
}
