//! The upgrade request's headers as an open connection keeps them: packed
//! into one allocation, and rebuilt as a [`HeaderMap`] the first time a
//! handler asks for them ([`Conn::headers`](crate::Conn::headers)).
//!
//! A `HeaderMap` keeps an index table, an entry table of about 100 bytes a
//! header and a heap allocation for each value: for the five headers a
//! minimal client sends that is about 0.8 KiB, a tenth of an idle
//! connection, kept for the life of the connection although most
//! applications read the headers at most once, in a handler. Packed, they
//! cost their own bytes plus one separator each (about 0.13 KiB for the
//! same five); the map is built once, on the first call, and then kept.
//!
//! This module only stores; it never parses a request (`head.rs` does, and
//! it validated every name and value already).

use std::fmt;
use std::sync::OnceLock;

use ::http::{HeaderMap, HeaderName, HeaderValue};

/// Headers packed as `name:value\n`, one line per value, in the order a
/// [`HeaderMap`] iterates them. A header name is a token (never `:`) and a
/// value never holds `\n` (`HeaderValue` refuses both), so the separators
/// cannot be confused with the data.
pub(crate) struct PackedHeaders {
    packed: Box<[u8]>,
    /// Built from `packed` on the first [`get`](Self::get).
    map: OnceLock<Box<HeaderMap>>,
}

impl PackedHeaders {
    /// Packs `headers`.
    pub(crate) fn new(headers: &HeaderMap) -> Self {
        let len = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 2)
            .sum();
        let mut packed = Vec::with_capacity(len);
        for (name, value) in headers {
            packed.extend_from_slice(name.as_str().as_bytes());
            packed.push(b':');
            packed.extend_from_slice(value.as_bytes());
            packed.push(b'\n');
        }
        PackedHeaders {
            packed: packed.into_boxed_slice(),
            map: OnceLock::new(),
        }
    }

    /// The headers as a map, built on the first call.
    pub(crate) fn get(&self) -> &HeaderMap {
        self.map.get_or_init(|| Box::new(self.unpack()))
    }

    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.packed.split(|&b| b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
    }

    fn unpack(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines().count());
        for (name, value) in self.lines() {
            // Both were valid when packed; a line that is not would be
            // skipped rather than panic.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                map.append(name, value);
            }
        }
        map
    }
}

impl fmt::Debug for PackedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.lines()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_what_was_packed_in_order_with_repeats() {
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.com"));
        headers.append("x-many", HeaderValue::from_static("one"));
        headers.append("x-many", HeaderValue::from_static("two: with a colon"));
        headers.append("x-empty", HeaderValue::from_static(""));
        headers.append(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xc3\xa9\tok").unwrap(),
        );
        let packed = PackedHeaders::new(&headers);
        assert_eq!(packed.get(), &headers);
        let many: Vec<_> = packed.get().get_all("x-many").iter().collect();
        assert_eq!(many, ["one", "two: with a colon"]);
        // Built once, then the same map.
        assert!(std::ptr::eq(packed.get(), packed.get()));
    }

    #[test]
    fn no_headers() {
        let packed = PackedHeaders::new(&HeaderMap::new());
        assert!(packed.get().is_empty());
    }
}
