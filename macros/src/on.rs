//! `#[on("event")]`: parse the arguments and the item, validate the
//! function against its event, expand to the function plus its companion.
//!
//! Whatever goes wrong, the user's item is emitted (unchanged, or without
//! what rustc would report a second time, see [`cleaned`]), next to one
//! `compile_error!` per mistake. When the event is known, a stub companion
//! is emitted as well, so lists that name the function in `handlers![...]`
//! keep compiling and the attribute's errors are the only ones reported.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::{FnArg, Item, ItemFn};

use crate::errors::Errors;
use crate::{args, expand, validate};

/// The attribute's expansion.
pub(crate) fn on(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse(args, &mut errors);

    let func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => {
            let (what, tokens, hint) = describe(&other);
            errors.spanned(
                tokens,
                format!(
                    "`#[on]` goes on an `async fn`, not on {what}: \
                     `#[on(\"connect\")] async fn join(conn: &Conn) {{ .. }}`{hint}"
                ),
            );
            return with_errors(item, &errors);
        }
        Err(_) => {
            errors.push(syn::Error::new(
                Span::call_site(),
                "`#[on]` goes on an `async fn`: `#[on(\"connect\")] async fn join(conn: &Conn) { .. }`",
            ));
            return with_errors(item, &errors);
        }
    };

    let mut fn_errors = Errors::default();
    // A guessed event (`"conect"` read as "connect") is not checked against
    // the parameters: if the guess is wrong, those errors would mislead.
    let checked_event = args.event.filter(|_| args.exact);
    validate::check(&func, checked_event, &mut fn_errors);
    let fn_ok = fn_errors.is_empty();
    errors.append(fn_errors);

    match args.event {
        // A sound function whose attribute has an extra mistake (`foo = 1`)
        // gets its real companion: the compiler checks it in the same run.
        Some(event) if fn_ok && args.exact => {
            let companion = expand::companion(&func, event, &args.krate);
            let errors = errors.to_compile_errors();
            quote!(#item #companion #errors)
        }
        Some(event) if !is_method(&func) => {
            let stub = expand::stub(&func, event, &args.krate);
            let item = cleaned(&func).unwrap_or(item);
            let errors = errors.to_compile_errors();
            quote!(#item #stub #errors)
        }
        _ => with_errors(cleaned(&func).unwrap_or(item), &errors),
    }
}

/// The item followed by the errors.
fn with_errors(item: TokenStream, errors: &Errors) -> TokenStream {
    let errors = errors.to_compile_errors();
    quote!(#item #errors)
}

/// Whether the function takes `self` (it sits in an `impl` or a trait, where
/// a companion struct cannot go).
fn is_method(func: &ItemFn) -> bool {
    matches!(func.sig.inputs.first(), Some(FnArg::Receiver(_)))
}

/// `func` cleaned of what would make rustc report the same mistake again
/// (a second `#[on]`, which would expand to a second companion; `const`
/// and `...`, which rustc refuses on an `async fn` on its own), when it has
/// any of them. Everything else stays as written.
fn cleaned(func: &ItemFn) -> Option<TokenStream> {
    let is_on =
        |attr: &syn::Attribute| attr.path().segments.last().is_some_and(|s| s.ident == "on");
    let sig = &func.sig;
    if !func.attrs.iter().any(is_on) && sig.constness.is_none() && sig.variadic.is_none() {
        return None;
    }
    let mut func = func.clone();
    func.attrs.retain(|attr| !is_on(attr));
    func.sig.constness = None;
    if func.sig.variadic.take().is_some() {
        // `(a, b, ...)`: drop the comma the variadic left behind.
        let inputs = std::mem::take(&mut func.sig.inputs);
        func.sig.inputs = inputs.into_iter().collect();
    }
    Some(func.into_token_stream())
}

/// What the attribute was put on instead of a function: a noun, the tokens
/// to point at (keyword and name), and a hint.
fn describe(item: &Item) -> (&'static str, TokenStream, &'static str) {
    const TYPE_HINT: &str =
        "; to handle a route's events with a type, implement `wharf::Handler` for it";
    match item {
        Item::Struct(s) => (
            "a struct",
            keyword_and(&s.struct_token, &s.ident),
            TYPE_HINT,
        ),
        Item::Enum(e) => ("an enum", keyword_and(&e.enum_token, &e.ident), TYPE_HINT),
        Item::Union(u) => ("a union", keyword_and(&u.union_token, &u.ident), TYPE_HINT),
        Item::Impl(i) => (
            "an `impl` block",
            keyword_and(&i.impl_token, &i.self_ty),
            "; put it on each handler function, outside the `impl` block, \
             or implement `wharf::Handler` for the type",
        ),
        Item::Trait(t) => ("a trait", keyword_and(&t.trait_token, &t.ident), ""),
        Item::Mod(m) => (
            "a module",
            keyword_and(&m.mod_token, &m.ident),
            "; put it on each handler function in the module",
        ),
        Item::Const(c) => ("a const", keyword_and(&c.const_token, &c.ident), ""),
        Item::Static(s) => ("a static", keyword_and(&s.static_token, &s.ident), ""),
        Item::Type(t) => ("a type alias", keyword_and(&t.type_token, &t.ident), ""),
        Item::Use(u) => ("a `use`", u.use_token.to_token_stream(), ""),
        Item::ForeignMod(f) => ("an `extern` block", f.abi.to_token_stream(), ""),
        _ => ("this item", first_token(item), ""),
    }
}

fn keyword_and(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}

fn first_token(item: &Item) -> TokenStream {
    item.to_token_stream().into_iter().take(1).collect()
}
