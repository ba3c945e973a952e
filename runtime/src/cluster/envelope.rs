//! The envelope: what one node publishes for the others, as bytes.
//!
//! A small, versioned binary format, big-endian throughout:
//!
//! | bytes | field |
//! | --- | --- |
//! | 3 | magic `WHF` |
//! | 1 | version (1) |
//! | 1 | kind: 1 send, 2 close request, 3 count request, 4 reply |
//! | 2 | origin node |
//! | 8 | request id (0 for a send) |
//!
//! then, for a send, a close or a count: the target (tag 0 all, 1 route,
//! 2 group: a 2-byte length and UTF-8; 3 connection: 8-byte id) and, but
//! for a count, the excepted connection (tag 0 none, 1 and an 8-byte id);
//! a send then carries its message (1 text or 2 binary, a 4-byte length,
//! the bytes), a close its code (2 bytes) and reason (a 1-byte length, at
//! most 123, UTF-8). A reply carries clean, timed-out, peer-gone and
//! dropped counts (4 bytes each) and a member count (8 bytes).
//!
//! Decoding never panics and never allocates more than the input: anything
//! that is not exactly one well-formed envelope within the size bound (a
//! foreign publisher's garbage, a truncated or oversized message, an
//! unknown version) is an error for the caller to count and ignore.

use std::sync::Arc;

use crate::connection::close::{CloseCode, CloseSummary, MAX_REASON_BYTES};
use crate::connection::handle::ConnId;
use crate::connection::message::{Bytes, Message, Text};
use crate::connection::registry::MAX_GROUP_NAME_BYTES;
use crate::connection::target::Target;

use super::keys::MAX_MIRRORED_PATH;

const MAGIC: &[u8; 3] = b"WHF";
const VERSION: u8 = 1;
/// The header and every field but a message's bytes fit in this.
pub(crate) const OVERHEAD: usize = 512;

const KIND_SEND: u8 = 1;
const KIND_CLOSE: u8 = 2;
const KIND_COUNT: u8 = 3;
const KIND_REPLY: u8 = 4;

/// One envelope, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    /// The node that published it.
    pub(crate) origin: u16,
    /// Pairs a reply with its request; 0 for a send.
    pub(crate) request: u64,
    pub(crate) body: Body,
}

/// What an envelope asks or answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    /// Deliver `msg` to the members of `target` but `except`.
    Send {
        target: Target,
        except: Option<ConnId>,
        msg: Message,
    },
    /// Close the members of `target` but `except`; answer with a reply.
    Close {
        target: Target,
        except: Option<ConnId>,
        code: CloseCode,
        reason: String,
    },
    /// Answer with the local member count of `target`.
    Count { target: Target },
    /// The answer to request `request` of node `origin`'s.
    Reply { summary: CloseSummary, count: u64 },
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    TooLarge,
    Truncated,
    BadMagic,
    UnknownVersion,
    UnknownKind,
    BadTarget,
    BadPayload,
    Trailing,
}

impl Invalid {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Invalid::TooLarge => "too large",
            Invalid::Truncated => "truncated",
            Invalid::BadMagic => "not a Wharf envelope",
            Invalid::UnknownVersion => "unknown version",
            Invalid::UnknownKind => "unknown kind",
            Invalid::BadTarget => "bad target",
            Invalid::BadPayload => "bad payload",
            Invalid::Trailing => "trailing bytes",
        }
    }
}

fn put_target(out: &mut Vec<u8>, target: &Target) {
    match target {
        Target::All => out.push(0),
        Target::Route(path) => put_name(out, 1, path),
        Target::Group(name) => put_name(out, 2, name),
        Target::Conn(id) => {
            out.push(3);
            out.extend_from_slice(&id.get().to_be_bytes());
        }
    }
}

fn put_name(out: &mut Vec<u8>, tag: u8, name: &str) {
    out.push(tag);
    // Names are checked before they get here (group names, mirrored
    // paths); the cut is a guard only.
    let bytes = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_except(out: &mut Vec<u8>, except: Option<ConnId>) {
    match except {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&id.get().to_be_bytes());
        }
    }
}

fn header(kind: u8, origin: u16, request: u64, extra: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(OVERHEAD.min(64) + extra);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&request.to_be_bytes());
    out
}

impl Envelope {
    /// The envelope as bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match &self.body {
            Body::Send {
                target,
                except,
                msg,
            } => {
                let mut out = header(KIND_SEND, self.origin, self.request, msg.len());
                put_target(&mut out, target);
                put_except(&mut out, *except);
                out.push(if msg.is_text() { 1 } else { 2 });
                out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                out.extend_from_slice(msg.as_bytes());
                out
            }
            Body::Close {
                target,
                except,
                code,
                reason,
            } => {
                let mut out = header(KIND_CLOSE, self.origin, self.request, reason.len());
                put_target(&mut out, target);
                put_except(&mut out, *except);
                out.extend_from_slice(&code.as_u16().to_be_bytes());
                let reason = crate::connection::close::truncate_reason(reason);
                out.push(reason.len() as u8);
                out.extend_from_slice(reason.as_bytes());
                out
            }
            Body::Count { target } => {
                let mut out = header(KIND_COUNT, self.origin, self.request, 0);
                put_target(&mut out, target);
                out
            }
            Body::Reply { summary, count } => {
                let mut out = header(KIND_REPLY, self.origin, self.request, 24);
                for n in [
                    summary.clean,
                    summary.timed_out,
                    summary.peer_gone,
                    summary.dropped,
                ] {
                    out.extend_from_slice(&(n.min(u32::MAX as usize) as u32).to_be_bytes());
                }
                out.extend_from_slice(&count.to_be_bytes());
                out
            }
        }
    }

    /// Decodes one envelope of at most `max_payload` message bytes.
    pub(crate) fn decode(bytes: &[u8], max_payload: usize) -> Result<Envelope, Invalid> {
        if bytes.len() > max_payload.saturating_add(OVERHEAD) {
            return Err(Invalid::TooLarge);
        }
        let mut r = Reader { bytes };
        if r.take(3)? != MAGIC {
            return Err(Invalid::BadMagic);
        }
        if r.u8()? != VERSION {
            return Err(Invalid::UnknownVersion);
        }
        let kind = r.u8()?;
        let origin = r.u16()?;
        let request = r.u64()?;
        let body = match kind {
            KIND_SEND => {
                let target = r.target()?;
                let except = r.except()?;
                let text = match r.u8()? {
                    1 => true,
                    2 => false,
                    _ => return Err(Invalid::BadPayload),
                };
                let len = r.u32()? as usize;
                if len > max_payload {
                    return Err(Invalid::TooLarge);
                }
                let data = Bytes::copy_from_slice(r.take(len)?);
                let msg = if text {
                    Message::Text(Text::try_from(data).map_err(|_| Invalid::BadPayload)?)
                } else {
                    Message::Binary(data)
                };
                Body::Send {
                    target,
                    except,
                    msg,
                }
            }
            KIND_CLOSE => {
                let target = r.target()?;
                let except = r.except()?;
                let code = CloseCode::from(r.u16()?);
                if !code.is_sendable() {
                    return Err(Invalid::BadPayload);
                }
                let len = usize::from(r.u8()?);
                if len > MAX_REASON_BYTES {
                    return Err(Invalid::BadPayload);
                }
                let reason = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| Invalid::BadPayload)?
                    .to_owned();
                Body::Close {
                    target,
                    except,
                    code,
                    reason,
                }
            }
            KIND_COUNT => {
                let target = r.target()?;
                if !matches!(target, Target::Conn(_)) {
                    return Err(Invalid::BadTarget);
                }
                Body::Count { target }
            }
            KIND_REPLY => {
                let summary = CloseSummary {
                    clean: r.u32()? as usize,
                    timed_out: r.u32()? as usize,
                    peer_gone: r.u32()? as usize,
                    dropped: r.u32()? as usize,
                    ..CloseSummary::default()
                };
                let count = r.u64()?;
                Body::Reply { summary, count }
            }
            _ => return Err(Invalid::UnknownKind),
        };
        if !r.bytes.is_empty() {
            return Err(Invalid::Trailing);
        }
        Ok(Envelope {
            origin,
            request,
            body,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        if self.bytes.len() < n {
            return Err(Invalid::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Invalid> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Invalid> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Invalid> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Invalid> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Invalid> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn name(&mut self, max: usize) -> Result<Arc<str>, Invalid> {
        let len = usize::from(self.u16()?);
        if len == 0 || len > max {
            return Err(Invalid::BadTarget);
        }
        let text = std::str::from_utf8(self.take(len)?).map_err(|_| Invalid::BadTarget)?;
        Ok(Arc::from(text))
    }

    fn target(&mut self) -> Result<Target, Invalid> {
        Ok(match self.u8()? {
            0 => Target::All,
            1 => Target::Route(self.name(MAX_MIRRORED_PATH)?),
            2 => {
                let name = self.name(MAX_GROUP_NAME_BYTES)?;
                crate::connection::registry::check_group(&name).map_err(|_| Invalid::BadTarget)?;
                Target::Group(name)
            }
            3 => Target::Conn(ConnId::from(self.u64()?)),
            _ => return Err(Invalid::BadTarget),
        })
    }

    fn except(&mut self) -> Result<Option<ConnId>, Invalid> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(ConnId::from(self.u64()?))),
            _ => Err(Invalid::BadTarget),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Envelope> {
        let summary = CloseSummary {
            clean: 3,
            peer_gone: 1,
            ..CloseSummary::default()
        };
        vec![
            Envelope {
                origin: 7,
                request: 0,
                body: Body::Send {
                    target: Target::Group(Arc::from("room:é")),
                    except: Some(ConnId::from(9)),
                    msg: Message::text("hello"),
                },
            },
            Envelope {
                origin: 1,
                request: 0,
                body: Body::Send {
                    target: Target::Route(Arc::from("/chat")),
                    except: None,
                    msg: Message::binary(vec![0u8, 255, 7]),
                },
            },
            Envelope {
                origin: 2,
                request: 42,
                body: Body::Close {
                    target: Target::All,
                    except: None,
                    code: CloseCode::from(4000),
                    reason: "Kicked".into(),
                },
            },
            Envelope {
                origin: 3,
                request: 43,
                body: Body::Count {
                    target: Target::Conn(ConnId::from((3u64 << 48) | 1)),
                },
            },
            Envelope {
                origin: 65535,
                request: u64::MAX,
                body: Body::Reply { summary, count: 5 },
            },
        ]
    }

    #[test]
    fn envelopes_round_trip() {
        for envelope in samples() {
            let bytes = envelope.encode();
            assert_eq!(Envelope::decode(&bytes, 1024), Ok(envelope));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for envelope in samples() {
            let bytes = envelope.encode();
            for cut in 0..bytes.len() {
                assert!(
                    Envelope::decode(&bytes[..cut], 1024).is_err(),
                    "cut at {cut}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Envelope::decode(&longer, 1024), Err(Invalid::Trailing));
        }
    }

    #[test]
    fn garbage_and_oversized_input_is_refused_without_panicking() {
        assert_eq!(Envelope::decode(b"", 1024), Err(Invalid::Truncated));
        assert_eq!(
            Envelope::decode(b"hello world", 1024),
            Err(Invalid::BadMagic)
        );
        let big = Envelope {
            origin: 1,
            request: 0,
            body: Body::Send {
                target: Target::All,
                except: None,
                msg: Message::binary(vec![1u8; 2000]),
            },
        }
        .encode();
        assert_eq!(Envelope::decode(&big, 1000), Err(Invalid::TooLarge));
        // A length field that claims more than is there.
        let mut lying = samples()[0].encode();
        let at = lying.len() - 9;
        lying[at..at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert!(Envelope::decode(&lying, 1 << 20).is_err());
        // Invalid UTF-8 in a text message.
        let mut bad_text = samples()[0].encode();
        let last = bad_text.len() - 1;
        bad_text[last] = 0xff;
        assert_eq!(Envelope::decode(&bad_text, 1024), Err(Invalid::BadPayload));
        // Pseudo-random bytes after a valid header.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            let len = (seed % 64) as usize;
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push(seed as u8);
            }
            let _ = Envelope::decode(&bytes, 1024);
        }
    }
}
