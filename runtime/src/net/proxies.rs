//! The trusted proxies: the addresses whose word about a client's address
//! (a PROXY protocol header, a `Forwarded` or `X-Forwarded-For` header) is
//! believed.
//!
//! Addresses are compared in their canonical form, so an IPv4 peer seen
//! on a dual-stack listener as `::ffff:10.0.0.1` matches `10.0.0.0/8`.
//! This module only answers "is this address trusted"; it reads nothing.

use std::net::IpAddr;

use ipnet::IpNet;

/// A list of trusted addresses and CIDR ranges, IPv4 and IPv6.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Parses `entries`: each an address (`10.0.0.7`, `::1`) or a CIDR range
    /// (`10.0.0.0/8`, `2001:db8::/32`). Bits set past a range's prefix
    /// length are ignored (`10.1.2.3/8` is `10.0.0.0/8`). The error names
    /// the first entry that is neither.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, String> {
        let nets = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .map(|net| net.trunc())
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| match net {
                        // A mapped IPv4 range is the IPv4 range.
                        IpNet::V6(v6) if v6.prefix_len() >= 96 => {
                            match v6.addr().to_ipv4_mapped() {
                                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                                    .map(IpNet::V4)
                                    .unwrap_or(net),
                                None => net,
                            }
                        }
                        other => other,
                    })
                    .map_err(|_| {
                        format!(
                            "{entry:?} is neither an IP address nor a CIDR range like 10.0.0.0/8 or 2001:db8::/32"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is a trusted proxy.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return false;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        TrustedProxies::parse(&entries).expect("valid list")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_of_both_families() {
        let trusted = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("2001:db8:1::9")));
        assert!(trusted.contains(ip("::1")));
        assert!(!trusted.contains(ip("2001:db9::1")));
        assert!(!trusted.contains(ip("127.0.0.1")));
        assert!(!TrustedProxies::default().contains(ip("10.0.0.1")));
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let trusted = list(&["10.0.0.0/8"]);
        assert!(trusted.contains(ip("::ffff:10.1.2.3")));
        let mapped = list(&["::ffff:10.0.0.0/104"]);
        assert!(mapped.contains(ip("10.1.2.3")));
    }

    #[test]
    fn host_bits_are_ignored_and_junk_is_named() {
        let trusted = list(&[" 10.1.2.3/8 "]);
        assert!(trusted.contains(ip("10.9.9.9")));
        let err = TrustedProxies::parse(&["10.0.0.0/33".to_owned()]).unwrap_err();
        assert!(err.contains("\"10.0.0.0/33\""), "{err}");
        assert!(TrustedProxies::parse(&["proxy.local".to_owned()]).is_err());
    }
}
