//! The four events a handler can be attached to, as the macro knows them:
//! their names in `#[on("...")]`, the parameters each handler takes, and the
//! nearest valid name for a misspelt one.
//!
//! This mirrors `wharf::__private::Event`; the generated code names the
//! runtime's variant (see [`Event::variant`]), so the two cannot drift apart
//! silently: a missing variant is a compile error in every user crate.

use proc_macro2::{Ident, Span};

/// An event, as written in `#[on("...")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Upgrade,
    Connect,
    Message,
    Close,
}

/// One parameter of a handler, as the docs and error messages spell it.
#[derive(Debug)]
pub(crate) struct Param {
    /// The conventional name (`conn`), for "write `conn: &Conn`".
    pub(crate) name: &'static str,
    /// The runtime type's name (`Conn`).
    pub(crate) ty: &'static str,
    /// Whether the handler takes it by shared reference (`&Conn`) or by value
    /// (`Message`).
    pub(crate) by_ref: bool,
}

impl Param {
    /// `&Conn` or `Message`.
    pub(crate) fn ty_text(&self) -> String {
        if self.by_ref {
            format!("&{}", self.ty)
        } else {
            self.ty.to_owned()
        }
    }

    /// `conn: &Conn`.
    pub(crate) fn text(&self) -> String {
        format!("{}: {}", self.name, self.ty_text())
    }
}

const CONN: Param = Param {
    name: "conn",
    ty: "Conn",
    by_ref: true,
};

impl Event {
    /// Every event, in the order a connection meets them.
    pub(crate) const ALL: [Event; 4] =
        [Event::Upgrade, Event::Connect, Event::Message, Event::Close];

    /// The name written in `#[on("...")]`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Upgrade => "upgrade",
            Event::Connect => "connect",
            Event::Message => "message",
            Event::Close => "close",
        }
    }

    /// The event called `name`, exactly.
    pub(crate) fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|event| event.name() == name)
    }

    /// The variant of the runtime's `Event` and `Slot` enums.
    pub(crate) fn variant(self) -> Ident {
        let name = match self {
            Event::Upgrade => "Upgrade",
            Event::Connect => "Connect",
            Event::Message => "Message",
            Event::Close => "Close",
        };
        Ident::new(name, Span::call_site())
    }

    /// The parameters a handler for this event takes, in order.
    pub(crate) fn params(self) -> &'static [Param] {
        const REQUEST: Param = Param {
            name: "req",
            ty: "Request",
            by_ref: true,
        };
        const MESSAGE: Param = Param {
            name: "msg",
            ty: "Message",
            by_ref: false,
        };
        const CLOSED: Param = Param {
            name: "closed",
            ty: "Closed",
            by_ref: true,
        };
        match self {
            Event::Upgrade => &[REQUEST],
            Event::Connect => &[CONN],
            Event::Message => &[CONN, MESSAGE],
            Event::Close => &[CONN, CLOSED],
        }
    }

    /// "a `connect` handler", "an `upgrade` handler".
    pub(crate) fn a_handler(self) -> String {
        let article = if self == Event::Upgrade { "an" } else { "a" };
        format!("{article} `{}` handler", self.name())
    }

    /// The parameter list as the user would write it: `(conn: &Conn, msg: Message)`.
    pub(crate) fn signature(self) -> String {
        let params: Vec<String> = self.params().iter().map(Param::text).collect();
        format!("({})", params.join(", "))
    }
}

/// `"upgrade", "connect", "message" or "close"`.
pub(crate) fn choices() -> String {
    let names: Vec<String> = Event::ALL
        .iter()
        .map(|event| format!("\"{}\"", event.name()))
        .collect();
    let (last, rest) = names.split_last().expect("there are events");
    format!("{} or {last}", rest.join(", "))
}

/// The event the user most likely meant by `unknown`: a near miss in
/// spelling or case (`"conect"`, `"Connect"`, `"on_close"`), or a common
/// synonym from other frameworks (`"open"`, `"disconnect"`, `"text"`).
pub(crate) fn suggest(unknown: &str) -> Option<Event> {
    let lower = unknown.trim().to_ascii_lowercase();
    let lower = lower
        .strip_prefix("on_")
        .or_else(|| lower.strip_prefix("on"))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(&lower);
    let synonym = match lower {
        "open" | "opened" | "join" | "connection" | "connected" | "start" | "accept" => {
            Some(Event::Connect)
        }
        "disconnect" | "disconnected" | "closed" | "leave" | "end" | "drop" | "hangup" => {
            Some(Event::Close)
        }
        "msg" | "text" | "binary" | "data" | "recv" | "receive" | "received" | "frame" => {
            Some(Event::Message)
        }
        "handshake" | "request" | "upgraded" | "http" | "auth" => Some(Event::Upgrade),
        _ => None,
    };
    synonym.or_else(|| {
        Event::ALL
            .into_iter()
            .map(|event| (distance(lower, event.name()), event))
            .filter(|&(d, event)| d <= 2.max(event.name().len() / 3))
            .min_by_key(|&(d, _)| d)
            .map(|(_, event)| event)
    })
}

/// Levenshtein distance between two short ASCII-ish strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(suggest("conect"), Some(Event::Connect));
        assert_eq!(suggest("Connect"), Some(Event::Connect));
        assert_eq!(suggest("on_close"), Some(Event::Close));
        assert_eq!(suggest("onmessage"), Some(Event::Message));
        assert_eq!(suggest("mesage"), Some(Event::Message));
        assert_eq!(suggest("upgarde"), Some(Event::Upgrade));
        assert_eq!(suggest("disconnect"), Some(Event::Close));
        assert_eq!(suggest("open"), Some(Event::Connect));
        assert_eq!(suggest("xyzzy"), None);
        assert_eq!(suggest(""), None);
    }

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("close", "close"), 0);
        assert_eq!(distance("clsoe", "close"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn texts() {
        assert_eq!(choices(), r#""upgrade", "connect", "message" or "close""#);
        assert_eq!(Event::Message.signature(), "(conn: &Conn, msg: Message)");
    }
}
