//! Parsing the attribute's arguments: `#[on("connect")]` or
//! `#[on("connect", crate = "ws")]`.
//!
//! The arguments are split on top-level commas and each piece is classified
//! by hand rather than handed to a generic parser, so every wrong shape gets
//! its own message (a bare `connect`, a second event, an unknown `key = ..`).
//! Parsing never fails outright: what could be understood is returned, the
//! rest is recorded in [`Errors`].

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::quote;
use syn::ext::IdentExt;
use syn::{Ident, LitStr, Path};

use crate::errors::Errors;
use crate::event::{self, Event};

/// What the attribute asked for.
pub(crate) struct Args {
    /// The event; `None` when it was missing or unknown with no likely
    /// candidate.
    pub(crate) event: Option<Event>,
    /// Whether `event` is exactly what the user wrote (not a guess made to
    /// keep the rest of the crate compiling after an error).
    pub(crate) exact: bool,
    /// The path the generated code names the runtime by.
    pub(crate) krate: Path,
}

/// Parses the attribute's arguments; mistakes go to `errors`.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args {
        event: None,
        exact: false,
        krate: syn::parse_quote!(::wharf),
    };
    // The event argument as written, once one has been seen (even a
    // malformed one: then "missing the event" would be a second error).
    let mut event_seen: Option<LitStr> = None;
    let mut krate_seen = false;

    for piece in split_commas(tokens, errors) {
        match classify(&piece) {
            Piece::Event(lit) => {
                if let Some(first) = &event_seen {
                    errors.spanned(
                        &lit,
                        format!(
                            "a handler handles one event, and this one already handles {}: \
                             write a separate function with `#[on({})]`",
                            first.token(),
                            lit.token(),
                        ),
                    );
                    continue;
                }
                let (event, exact) = event_from_lit(&lit, errors);
                args.event = event;
                args.exact = exact;
                event_seen = Some(lit);
            }
            Piece::Bare(ident) => {
                let name = ident.unraw().to_string();
                let meant = Event::from_name(&name).or_else(|| event::suggest(&name));
                let message = match meant {
                    Some(event) => format!(
                        "the event is a string literal: write `#[on(\"{}\")]`",
                        event.name()
                    ),
                    None => format!(
                        "expected the event as a string literal, one of {}",
                        event::choices()
                    ),
                };
                errors.spanned(&ident, message);
                // Go on as if it had been quoted, so the function still gets
                // its companion and `handlers![...]` does not cascade.
                if event_seen.is_none() {
                    args.event = meant;
                    event_seen = Some(LitStr::new(&name, ident.span()));
                }
            }
            Piece::KeyValue { key, value } => {
                if key != "crate" {
                    errors.spanned(
                        &key,
                        format!(
                            "unknown argument `{}`: `#[on]` takes the event, then optionally \
                             `crate = \"path\"` (for example `#[on(\"connect\", crate = \"ws\")]`)",
                            key.unraw()
                        ),
                    );
                } else if krate_seen {
                    errors.spanned(&key, "`crate` is given twice: keep one");
                } else {
                    krate_seen = true;
                    if let Some(path) = krate_from(&value, errors) {
                        args.krate = path;
                    }
                }
            }
            Piece::Other(tokens) => {
                let lone_literal = matches!(tokens.as_slice(), [TokenTree::Literal(_)]);
                let message = if lone_literal {
                    // A literal in the event's place is the event, mistyped.
                    if event_seen.is_none() {
                        event_seen = Some(LitStr::new("", tokens[0].span()));
                    }
                    format!(
                        "the event is a string literal, one of {}: for example \
                         `#[on(\"connect\")]`",
                        event::choices()
                    )
                } else {
                    format!(
                        "expected the event as a string literal, one of {}, then optionally \
                         `crate = \"path\"`",
                        event::choices()
                    )
                };
                errors.spanned(quote!(#(#tokens)*), message);
            }
        }
    }

    if event_seen.is_none() {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!(
                "missing the event this function handles: write `#[on(\"connect\")]` \
                 (events: {})",
                event::choices()
            ),
        ));
    }
    args
}

/// One comma-separated argument, classified.
enum Piece {
    /// `"connect"`.
    Event(LitStr),
    /// `connect`, unquoted.
    Bare(Ident),
    /// `key = value...` (`crate` is a keyword but still an identifier token).
    KeyValue { key: Ident, value: Vec<TokenTree> },
    /// Anything else.
    Other(Vec<TokenTree>),
}

fn classify(piece: &[TokenTree]) -> Piece {
    match piece {
        [TokenTree::Literal(lit)] => {
            match syn::parse2::<LitStr>(TokenTree::Literal(lit.clone()).into()) {
                Ok(lit) => Piece::Event(lit),
                Err(_) => Piece::Other(piece.to_vec()),
            }
        }
        [TokenTree::Ident(ident)] => Piece::Bare(ident.clone()),
        [TokenTree::Ident(key), TokenTree::Punct(eq), value @ ..] if eq.as_char() == '=' => {
            Piece::KeyValue {
                key: key.clone(),
                value: value.to_vec(),
            }
        }
        _ => Piece::Other(piece.to_vec()),
    }
}

/// Splits `tokens` on top-level commas. A trailing comma is fine; an empty
/// argument in the middle (`"connect",, x`) is an error.
fn split_commas(tokens: TokenStream, errors: &mut Errors) -> Vec<Vec<TokenTree>> {
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                if current.is_empty() {
                    errors.spanned(p, "unexpected `,`: expected an argument before it");
                } else {
                    pieces.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(token),
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The event a string names: `(event, exact)`. An unknown name is an error
/// that suggests the nearest event, which is then used as a stand-in so the
/// rest of the crate compiles as if it had been fixed.
fn event_from_lit(lit: &LitStr, errors: &mut Errors) -> (Option<Event>, bool) {
    let name = lit.value();
    if let Some(event) = Event::from_name(&name) {
        return (Some(event), true);
    }
    let guess = event::suggest(&name);
    let message = match guess {
        Some(event) => format!(
            "unknown event {}: did you mean \"{}\"? (events: {})",
            lit.token(),
            event.name(),
            event::choices()
        ),
        None if name.is_empty() => format!("the event is empty: expected {}", event::choices()),
        None => format!(
            "unknown event {}: expected {}",
            lit.token(),
            event::choices()
        ),
    };
    errors.spanned(lit, message);
    (guess, false)
}

/// The path in `crate = "path"`.
fn krate_from(value: &[TokenTree], errors: &mut Errors) -> Option<Path> {
    const HOW: &str = "`crate` takes the path the `wharf` crate is reachable at, \
                       as a string: `crate = \"ws\"` or `crate = \"::my_app::wharf\"`";
    let lit = match value {
        [TokenTree::Literal(lit)] => {
            syn::parse2::<LitStr>(TokenTree::Literal(lit.clone()).into()).ok()
        }
        _ => None,
    };
    let Some(lit) = lit else {
        if value.is_empty() {
            errors.push(syn::Error::new(Span::call_site(), HOW));
        } else {
            errors.spanned(quote!(#(#value)*), HOW);
        }
        return None;
    };
    match lit.parse_with(Path::parse_mod_style) {
        Ok(path) => Some(path),
        Err(_) => {
            errors.spanned(&lit, format!("{} is not a path: {HOW}", lit.token()));
            None
        }
    }
}
