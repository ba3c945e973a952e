//! The client address behind trusted proxies, from the request's
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` header.
//!
//! Each proxy on the way appends the address it received the request
//! from, so the list reads left to right from the client to the last
//! proxy. Only the entries appended by trusted proxies can be believed:
//! the list is walked from the right, past every address that is itself a
//! trusted proxy, and the first other address is the client. An entry that
//! names no address (`unknown`, an obfuscated `_identifier`, something
//! unparsable) ends the walk: the client is then the last trusted proxy
//! seen, which is what a proxy that hides its clients asks for.
//!
//! `Forwarded` wins when it has a `for=` anywhere; otherwise
//! `X-Forwarded-For` is read. This module is only called for a request
//! whose sender is a trusted proxy, and never fails: headers it cannot
//! use leave the address it was given.

use std::net::{IpAddr, SocketAddr};

use ::http::HeaderMap;

use crate::net::TrustedProxies;

/// One hop of a forwarding list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// An address, with its port when the proxy gave one (0 otherwise).
    Addr(SocketAddr),
    /// `unknown`, an obfuscated identifier, or anything unparsable.
    Hidden,
}

/// The client behind `sender`, a trusted proxy that sent `headers`; the
/// address is in its canonical form (a mapped IPv4 address as IPv4).
pub(crate) fn client_addr(
    headers: &HeaderMap,
    sender: SocketAddr,
    trusted: &TrustedProxies,
) -> SocketAddr {
    let hops = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
    let Some(hops) = hops else {
        return sender;
    };
    let mut last = sender;
    for hop in hops.iter().rev() {
        match *hop {
            Node::Addr(addr) => {
                let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                if !trusted.contains(addr.ip()) {
                    return addr;
                }
                last = addr;
            }
            Node::Hidden => return last,
        }
    }
    last
}

/// The `for=` of every element of every `Forwarded` header, in order;
/// `None` when no element has one. An element without `for=` is a hop
/// that hides its client.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Node>> {
    let mut hops = Vec::new();
    let mut any = false;
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else {
            hops.push(Node::Hidden);
            continue;
        };
        for element in split_outside_quotes(value, ',') {
            if element.trim().is_empty() {
                continue;
            }
            let mut node = Node::Hidden;
            for pair in split_outside_quotes(element, ';') {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                if key.trim().eq_ignore_ascii_case("for") {
                    any = true;
                    node = parse_node(&unquote(value.trim()));
                }
            }
            hops.push(node);
        }
    }
    any.then_some(hops)
}

/// Every entry of every `X-Forwarded-For` header, in order; `None` when
/// there is none.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Node>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            hops.push(Node::Hidden);
            continue;
        };
        hops.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(parse_node),
        );
    }
    (!hops.is_empty()).then_some(hops)
}

/// Splits `text` at `separator`, except inside a quoted string.
fn split_outside_quotes(text: &str, separator: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// A token as is, or a quoted string without its quotes and escapes.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`,
/// `[2001:db8::1]:4711`, a bare `2001:db8::1` (X-Forwarded-For writes
/// IPv6 so); an obfuscated port (`:_abc`) counts as none.
fn parse_node(node: &str) -> Node {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Node::Addr(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Node::Addr(addr);
    }
    // `[v6]`, or an address whose port is obfuscated.
    let host = match node.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => host,
            Some((host, port)) if port.strip_prefix(':').is_some_and(is_obfuscated_port) => host,
            _ => return Node::Hidden,
        },
        None => match node.rsplit_once(':') {
            Some((host, port)) if is_obfuscated_port(port) => host,
            _ => return Node::Hidden,
        },
    };
    match host.parse::<IpAddr>() {
        Ok(ip) if node.starts_with('[') == ip.is_ipv6() => Node::Addr(SocketAddr::new(ip, 0)),
        _ => Node::Hidden,
    }
}

/// `_identifier`, RFC 7239's obfuscated port.
fn is_obfuscated_port(port: &str) -> bool {
    port.strip_prefix('_').is_some_and(|id| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        TrustedProxies::parse(&entries).unwrap()
    }

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.2:5000";

    fn client(lines: &[(&'static str, &str)]) -> SocketAddr {
        client_addr(&headers(lines), addr(PROXY), &trusted(&["10.0.0.0/8"]))
    }

    #[test]
    fn forwarded_forms() {
        assert_eq!(
            client(&[("forwarded", "for=192.0.2.60")]),
            addr("192.0.2.60:0")
        );
        assert_eq!(
            client(&[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]),
            addr("192.0.2.60:0")
        );
        assert_eq!(
            client(&[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")]),
            addr("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(
            client(&[("forwarded", "for=\"[2001:db8:cafe::17]\"")]),
            addr("[2001:db8:cafe::17]:0")
        );
        assert_eq!(
            client(&[("forwarded", "for=\"192.0.2.60:_hidden\"")]),
            addr("192.0.2.60:0")
        );
        // Several elements and headers: the rightmost untrusted.
        assert_eq!(
            client(&[
                ("forwarded", "for=192.0.2.43, for=198.51.100.17"),
                ("forwarded", "for=10.1.1.1")
            ]),
            addr("198.51.100.17:0")
        );
        // A quoted comma does not split.
        assert_eq!(
            client(&[(
                "forwarded",
                "for=192.0.2.1;x=\"a,b\", for=198.51.100.17;proto=https"
            )]),
            addr("198.51.100.17:0")
        );
    }

    #[test]
    fn hidden_clients_fall_back_to_the_proxy() {
        assert_eq!(client(&[("forwarded", "for=unknown")]), addr(PROXY));
        assert_eq!(client(&[("forwarded", "for=_gazonk")]), addr(PROXY));
        assert_eq!(client(&[("forwarded", "for=\"_mdn\"")]), addr(PROXY));
        // Behind another trusted proxy that hid its client: that proxy.
        assert_eq!(
            client(&[("forwarded", "for=_hidden, for=10.9.9.9")]),
            addr("10.9.9.9:0")
        );
        // An element without for=.
        assert_eq!(
            client(&[("forwarded", "for=192.0.2.1, proto=https")]),
            addr(PROXY)
        );
        assert_eq!(client(&[("x-forwarded-for", "not-an-ip")]), addr(PROXY));
        assert_eq!(client(&[("x-forwarded-for", "fe80::1%eth0")]), addr(PROXY));
        assert_eq!(client(&[]), addr(PROXY));
    }

    #[test]
    fn x_forwarded_for_rightmost_untrusted() {
        assert_eq!(
            client(&[("x-forwarded-for", "203.0.113.9, 198.51.100.1, 10.0.0.5")]),
            addr("198.51.100.1:0")
        );
        assert_eq!(
            client(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-for", "10.0.0.5")
            ]),
            addr("203.0.113.9:0")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "2001:db8::7")]),
            addr("[2001:db8::7]:0")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "[2001:db8::7]:1234")]),
            addr("[2001:db8::7]:1234")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "192.0.2.1:80")]),
            addr("192.0.2.1:80")
        );
        assert_eq!(
            client(&[("x-forwarded-for", "::ffff:192.0.2.1")]),
            addr("192.0.2.1:0")
        );
        // Every entry trusted: the leftmost.
        assert_eq!(
            client(&[("x-forwarded-for", "10.3.3.3, 10.4.4.4")]),
            addr("10.3.3.3:0")
        );
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for() {
        assert_eq!(
            client(&[
                ("x-forwarded-for", "203.0.113.9"),
                ("forwarded", "for=198.51.100.1")
            ]),
            addr("198.51.100.1:0")
        );
        // A Forwarded without for= leaves X-Forwarded-For in charge.
        assert_eq!(
            client(&[
                ("forwarded", "proto=https"),
                ("x-forwarded-for", "203.0.113.9")
            ]),
            addr("203.0.113.9:0")
        );
    }

    #[test]
    fn nodes() {
        assert_eq!(parse_node("[192.0.2.1]"), Node::Hidden);
        assert_eq!(parse_node("192.0.2.1:_x"), Node::Addr(addr("192.0.2.1:0")));
        assert_eq!(
            parse_node("[2001:db8::1]:_x-y"),
            Node::Addr(addr("[2001:db8::1]:0"))
        );
        assert_eq!(parse_node("[2001:db8::1]:"), Node::Hidden);
        assert_eq!(parse_node("[2001:db8::1"), Node::Hidden);
        assert_eq!(parse_node(""), Node::Hidden);
        assert_eq!(parse_node("192.0.2.1:99999"), Node::Hidden);
        assert_eq!(unquote("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote("\""), "\"");
    }

    proptest::proptest! {
        /// Whatever a proxy sends, the walk returns an address.
        #[test]
        fn never_panics(value in "\\PC{0,200}") {
            if let Ok(value) = value.parse::<::http::HeaderValue>() {
                let mut map = HeaderMap::new();
                map.insert("forwarded", value.clone());
                map.insert("x-forwarded-for", value);
                let _ = client_addr(&map, addr(PROXY), &trusted(&["10.0.0.0/8"]));
            }
        }
    }
}
