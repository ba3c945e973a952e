//! Pointing generated code at a range of the user's tokens.
//!
//! On stable Rust a proc macro cannot join two spans into one, so a
//! generated token can only point at a single user token: `Result` of
//! `Result<(), String>`, `&` of `&String`. rustc, though, computes an
//! expression's span from its first to its last token; giving the first
//! generated token the span of the user's first token and the last one the
//! span of the user's last token makes the compiler underline the whole
//! range. [`over`] does that.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::ToTokens;

/// The spans of the first and last tokens of `tokens` (the call site when
/// there are none).
pub(crate) fn range(tokens: &impl ToTokens) -> (Span, Span) {
    let tokens: Vec<TokenTree> = tokens.to_token_stream().into_iter().collect();
    match (tokens.first(), tokens.last()) {
        (Some(first), Some(last)) => (first.span(), last.span()),
        _ => (Span::call_site(), Span::call_site()),
    }
}

/// `tokens` with every span set to `first`, except the last top-level token,
/// which gets `last`: the expression they form spans the user's range.
pub(crate) fn over(tokens: TokenStream, (first, last): (Span, Span)) -> TokenStream {
    let mut tokens: Vec<TokenTree> = tokens.into_iter().map(|t| respan(t, first)).collect();
    if let Some(token) = tokens.pop() {
        tokens.push(set_span(token, last));
    }
    tokens.into_iter().collect()
}

fn respan(token: TokenTree, span: Span) -> TokenTree {
    match token {
        TokenTree::Group(group) => {
            let stream = group
                .stream()
                .into_iter()
                .map(|t| respan(t, span))
                .collect();
            let mut new = Group::new(group.delimiter(), stream);
            new.set_span(span);
            TokenTree::Group(new)
        }
        other => set_span(other, span),
    }
}

fn set_span(mut token: TokenTree, span: Span) -> TokenTree {
    token.set_span(span);
    token
}
