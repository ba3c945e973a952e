//! Every Redis key and channel name the cluster uses, built in one place
//! from the namespace and a target, and the URL as it may be logged.
//!
//! Names from users (groups, request paths) are hex-encoded here and
//! nowhere spliced into a name as they are: no user text can reach another
//! key, a pattern, or the command itself. Wharf never uses patterns
//! (`PSUBSCRIBE`, `KEYS`).

use crate::connection::handle::ConnId;
use crate::connection::target::Target;

/// Longest request path mirrored in Redis; a route selector on a longer
/// path (only a fallback route accepts arbitrary paths) reaches this
/// node's connections only.
pub(crate) const MAX_MIRRORED_PATH: usize = 256;

/// The node number in a connection id: its high 16 bits.
pub(crate) fn node_of(id: ConnId) -> u16 {
    (id.get() >> 48) as u16
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The names under one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    ns: String,
}

impl Keys {
    pub(crate) fn new(ns: &str) -> Self {
        Keys { ns: ns.to_owned() }
    }

    /// Whether `target` has a channel and a count of its own in Redis.
    pub(crate) fn mirrored(target: &Target) -> bool {
        match target {
            Target::Route(path) => path.len() <= MAX_MIRRORED_PATH,
            Target::All | Target::Group(_) => true,
            Target::Conn(_) => false,
        }
    }

    /// The part of a name that says which target it is for.
    fn suffix(target: &Target) -> Option<String> {
        match target {
            Target::All => Some("a".to_owned()),
            Target::Route(path) if path.len() <= MAX_MIRRORED_PATH => {
                Some(format!("r:{}", hex(path.as_bytes())))
            }
            Target::Group(name) => Some(format!("g:{}", hex(name.as_bytes()))),
            Target::Route(_) | Target::Conn(_) => None,
        }
    }

    /// The channel envelopes for `target` are published on: its own, or
    /// for one connection the channel of the node that owns it.
    pub(crate) fn channel(&self, target: &Target) -> Option<String> {
        match target {
            Target::Conn(id) => Some(self.node_channel(node_of(*id))),
            _ => Self::suffix(target).map(|s| format!("{}:c:{s}", self.ns)),
        }
    }

    /// The channel of node `node`: close and count requests for its
    /// connections, and answers to its own requests.
    pub(crate) fn node_channel(&self, node: u16) -> String {
        format!("{}:n:{node}", self.ns)
    }

    /// The hash of per-node member counts of `target`.
    pub(crate) fn count_key(&self, target: &Target) -> Option<String> {
        Self::suffix(target).map(|s| format!("{}:count:{s}", self.ns))
    }

    /// Node `node`'s alive key.
    pub(crate) fn alive_key(&self, node: u16) -> String {
        format!("{}{node}", self.alive_prefix())
    }

    /// What alive keys start with (the count script appends node numbers).
    pub(crate) fn alive_prefix(&self) -> String {
        format!("{}:alive:", self.ns)
    }

    /// The counter node numbers are taken from.
    pub(crate) fn node_seq(&self) -> String {
        format!("{}:node-seq", self.ns)
    }
}

/// `url` with its password (and nothing else) replaced by `***`, for logs
/// and errors; an unparseable URL is not shown at all.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<an unparseable URL>".to_owned(),
    }
}

/// The password in `url`, if any: scrubbed from any error text before it
/// is shown (in case a library quotes it).
pub(crate) fn password(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let password = parsed.password()?;
    let decoded = percent_decode(password);
    Some(decoded).filter(|p| !p.is_empty())
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn user_text_is_hex_encoded() {
        let keys = Keys::new("chat");
        let group = Target::Group(Arc::from("room:* \r\nFLUSHALL"));
        let channel = keys.channel(&group).unwrap();
        assert!(channel.starts_with("chat:c:g:"), "{channel}");
        assert!(
            channel[9..].bytes().all(|b| b.is_ascii_hexdigit()),
            "{channel}"
        );
        assert_eq!(keys.channel(&Target::All).unwrap(), "chat:c:a");
        assert_eq!(
            keys.count_key(&Target::Route(Arc::from("/a"))).unwrap(),
            "chat:count:r:2f61"
        );
        let long = Target::Route(Arc::from("/".repeat(MAX_MIRRORED_PATH + 1)));
        assert!(keys.channel(&long).is_none() && !Keys::mirrored(&long));
        let id = ConnId::from((7u64 << 48) | 3);
        assert_eq!(keys.channel(&Target::Conn(id)).unwrap(), "chat:n:7");
    }

    #[test]
    fn passwords_are_redacted() {
        let url = "redis://user:s3cr%40t@127.0.0.1:6379/2";
        let shown = redact(url);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("user:***@127.0.0.1:6379/2"), "{shown}");
        assert_eq!(password(url).as_deref(), Some("s3cr@t"));
        assert_eq!(redact("redis://127.0.0.1"), "redis://127.0.0.1");
        assert_eq!(redact("not a url :s3cret"), "<an unparseable URL>");
    }
}
