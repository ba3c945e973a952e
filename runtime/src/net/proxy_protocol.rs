//! The PROXY protocol header (HAProxy's, versions 1 and 2): the line or
//! block a TCP load balancer (HAProxy, AWS NLB, ...) writes before
//! anything else on a connection, saying whose connection it forwards.
//!
//! The header is parsed by the `ppp` crate; this module only reads it off
//! the socket, never a byte further: version 2 says its own length, and a
//! version 1 line is found with `peek` before it is read. So the TLS
//! handshake or the HTTP request that follows starts on the next byte, and
//! no buffer has to be handed on. Memory is bounded by the longest header
//! accepted ([`MAX_V2_HEADER`], or 107 bytes for version 1); time by the
//! caller (the upgrade timeout). This module never decides whether the
//! header is believed: that is the trusted proxies' business.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use futures_util::AsyncReadExt;

use crate::rt::TcpStream;

/// The longest version 2 header accepted, its TLVs included; a longer one
/// is refused. Load balancers send tens of bytes (AWS adds its VPC
/// endpoint id, HAProxy its TLS details).
pub(crate) const MAX_V2_HEADER: usize = 4096;
/// The longest version 1 line, CRLF included (the specification's limit).
const MAX_V1_HEADER: usize = 107;
/// The first bytes of a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The first bytes of a version 2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The shortest header of either version ("PROXY UNKNOWN\r\n"): this much
/// can always be read without reading past it.
const SHORTEST: usize = 15;
/// A version 2 header's fixed part: signature, version and command,
/// family and protocol, length.
const V2_FIXED: usize = 16;

/// Why a connection's PROXY header was refused (its socket is dropped).
#[derive(Debug)]
pub(crate) enum ProxyError {
    /// The peer closed before sending a byte: nothing to count.
    Closed,
    /// The connection does not start with a PROXY header.
    Missing,
    /// The stream ended inside the header.
    Truncated,
    /// The header is longer than the limit.
    TooLarge,
    /// The header does not parse.
    Malformed(String),
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Closed => f.write_str("closed before the PROXY header"),
            ProxyError::Missing => f.write_str("no PROXY header"),
            ProxyError::Truncated => f.write_str("the stream ended inside the PROXY header"),
            ProxyError::TooLarge => write!(f, "PROXY header over {MAX_V2_HEADER} bytes"),
            ProxyError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
            ProxyError::Io(err) => write!(f, "reading the PROXY header: {err}"),
        }
    }
}

/// Reads the PROXY header at the start of `tcp` and returns the client
/// address it names: `None` when it names none (version 1 `UNKNOWN`, a
/// version 2 `LOCAL` command such as a load balancer's health check, or
/// an address family other than IPv4 and IPv6), in which case the
/// connection is the proxy's own.
pub(crate) async fn read_header(tcp: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyError> {
    let mut buf = Vec::with_capacity(V2_FIXED);
    // The first bytes, checked as they come: a peer that does not speak
    // the protocol is refused at its first wrong byte.
    while buf.len() < SHORTEST {
        let start = buf.len();
        buf.resize(SHORTEST, 0);
        let n = tcp.read(&mut buf[start..]).await.map_err(ProxyError::Io)?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(if start == 0 {
                ProxyError::Closed
            } else {
                ProxyError::Truncated
            });
        }
        let seen = &buf[..];
        let common = |prefix: &[u8]| seen.len().min(prefix.len());
        if seen[..common(V1_PREFIX)] != V1_PREFIX[..common(V1_PREFIX)]
            && seen[..common(V2_SIGNATURE)] != V2_SIGNATURE[..common(V2_SIGNATURE)]
        {
            return Err(ProxyError::Missing);
        }
    }
    if buf.starts_with(V1_PREFIX) {
        read_v1_rest(tcp, &mut buf).await?;
        parse_v1(&buf)
    } else {
        read_exact(tcp, &mut buf, V2_FIXED).await?;
        let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if V2_FIXED + length > MAX_V2_HEADER {
            return Err(ProxyError::TooLarge);
        }
        read_exact(tcp, &mut buf, V2_FIXED + length).await?;
        parse_v2(&buf)
    }
}

/// Reads until `buf` holds `len` bytes.
async fn read_exact(tcp: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<(), ProxyError> {
    while buf.len() < len {
        let start = buf.len();
        buf.resize(len, 0);
        let n = tcp.read(&mut buf[start..]).await.map_err(ProxyError::Io)?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(ProxyError::Truncated);
        }
    }
    Ok(())
}

/// Reads the rest of a version 1 line, up to its LF and not a byte past:
/// `peek` shows what has arrived, and only the line's bytes are read.
async fn read_v1_rest(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), ProxyError> {
    let mut scratch = [0u8; MAX_V1_HEADER];
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            if end + 1 != buf.len() {
                // Only the shortest header fits in the first read whole.
                return Err(ProxyError::Malformed("bytes after the line".into()));
            }
            return Ok(());
        }
        let room = MAX_V1_HEADER - buf.len();
        if room == 0 {
            return Err(ProxyError::TooLarge);
        }
        let n = tcp
            .peek(&mut scratch[..room])
            .await
            .map_err(ProxyError::Io)?;
        if n == 0 {
            return Err(ProxyError::Truncated);
        }
        let take = scratch[..n]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(n, |lf| lf + 1);
        let len = buf.len() + take;
        read_exact(tcp, buf, len).await?;
    }
}

fn parse_v1(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::v1::{Addresses, Header};
    let header = Header::try_from(header).map_err(|err| ProxyError::Malformed(err.to_string()))?;
    Ok(match header.addresses {
        Addresses::Tcp4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::Tcp6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::Unknown => None,
    })
}

fn parse_v2(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(header).map_err(|err| ProxyError::Malformed(err.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::IPv6(ip) => Some(SocketAddr::from((ip.source_address, ip.source_port))),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        assert_eq!(
            parse_v1(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n").unwrap(),
            Some("192.0.2.1:56324".parse().unwrap())
        );
        assert_eq!(
            parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n").unwrap(),
            Some("[2001:db8::1]:4711".parse().unwrap())
        );
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").unwrap(), None);
        assert!(parse_v1(b"PROXY TCP4 192.0.2.1\r\n").is_err());
        assert!(parse_v1(b"PROXY TCP4 999.0.2.1 198.51.100.2 1 2\r\n").is_err());
        assert!(parse_v1(b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n").is_err());
    }

    #[test]
    fn v2_blocks() {
        let mut block = V2_SIGNATURE.to_vec();
        block.extend([
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 1, 187,
        ]);
        assert_eq!(
            parse_v2(&block).unwrap(),
            Some("192.0.2.1:56324".parse().unwrap())
        );
        // LOCAL: the proxy's own connection.
        block[12] = 0x20;
        assert_eq!(parse_v2(&block).unwrap(), None);
        // An unknown version.
        block[12] = 0x31;
        assert!(parse_v2(&block).is_err());
        // A length too short for the addresses.
        let mut short = V2_SIGNATURE.to_vec();
        short.extend([0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(parse_v2(&short).is_err());
    }

    proptest::proptest! {
        /// Whatever a peer sends, parsing returns; it never panics.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_v1(&bytes);
            let mut v1 = V1_PREFIX.to_vec();
            v1.extend(&bytes);
            let _ = parse_v1(&v1);
            let _ = parse_v2(&bytes);
            let mut v2 = V2_SIGNATURE.to_vec();
            v2.extend(&bytes);
            let _ = parse_v2(&v2);
        }
    }
}
