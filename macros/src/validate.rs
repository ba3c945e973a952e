//! Checking an annotated function against its event, before any code is
//! generated.
//!
//! Only what syntax can tell is checked here: an `async fn` that is a free,
//! non-generic function, with the number of parameters the event passes and
//! the obviously wrong shapes (`Conn` by value, `&Message`). Whether a
//! parameter's type really is `&Conn` is left to the compiler, which the
//! expansion points at the user's own type (see `expand.rs`).

use proc_macro2::{TokenStream, TokenTree};
use quote::{quote, ToTokens};
use syn::{FnArg, GenericParam, ItemFn, Pat, Type};

use crate::errors::Errors;
use crate::event::{Event, Param};

/// Records every mistake in `func`'s signature for `event` (`None`: the
/// event is unknown, so only the event-independent checks run).
pub(crate) fn check(func: &ItemFn, event: Option<Event>, errors: &mut Errors) {
    let sig = &func.sig;
    let shape = event.map_or_else(
        || "(conn: &Conn, ...)".to_owned(),
        |event| event.signature(),
    );

    for attr in &func.attrs {
        if attr.path().segments.last().is_some_and(|s| s.ident == "on") {
            let this = event.map_or_else(String::new, |event| format!(" (\"{}\")", event.name()));
            let other = attr
                .parse_args_with(|input: syn::parse::ParseStream<'_>| {
                    let lit: syn::LitStr = input.parse()?;
                    input.parse::<TokenStream>()?;
                    Ok(lit.value())
                })
                .map_or_else(
                    |_| "the other event".to_owned(),
                    |name| format!("\"{name}\""),
                );
            errors.spanned(
                attr,
                format!(
                    "a function handles one event, and this one already has an `#[on]`{this}: \
                     write a separate function for {other}"
                ),
            );
        }
    }
    if let Some(constness) = &sig.constness {
        errors.spanned(
            constness,
            "a handler cannot be a `const fn`: remove `const`",
        );
    }
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!(
                "a handler must be an `async fn`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            "a handler cannot be an `unsafe fn`: the runtime calls it as a safe function; remove `unsafe`",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            "a handler cannot have an ABI: remove the `extern`; the runtime calls it as a Rust `async fn`",
        );
    }
    let generic = sig
        .generics
        .params
        .iter()
        .any(|param| !matches!(param, GenericParam::Lifetime(_)));
    if generic {
        let generics = &sig.generics;
        errors.spanned(
            quote!(#generics),
            format!(
                "a handler cannot be generic: the runtime calls it with concrete types, \
                 `{shape}`; remove the type and const parameters"
            ),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.spanned(
            where_clause,
            "a handler cannot have a `where` clause: the runtime calls it with concrete types; \
             remove it",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(
            variadic,
            format!("a handler cannot be variadic: it takes `{shape}`"),
        );
    }

    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        errors.spanned(
            receiver,
            format!(
                "a handler is a free function, not a method: move it out of the `impl` block \
                 and take `{shape}` instead of `self`"
            ),
        );
        return;
    }
    let Some(event) = event else {
        return;
    };
    check_params(func, event, errors);
}

/// Parameter count and the syntactic shape of each parameter.
fn check_params(func: &ItemFn, event: Event, errors: &mut Errors) {
    let sig = &func.sig;
    let expected = event.params();
    let given: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let handler = event.a_handler();
    let shape = event.signature();

    if given.len() > expected.len() {
        let extra = &given[expected.len()..];
        let these = if extra.len() == 1 {
            "this parameter"
        } else {
            "these parameters"
        };
        errors.spanned(
            quote!(#(#extra),*),
            format!("too many parameters: {handler} takes `{shape}`; remove {these}"),
        );
    } else if given.len() < expected.len() {
        let missing: Vec<String> = expected[given.len()..].iter().map(Param::text).collect();
        let noun = if missing.len() == 1 {
            "parameter"
        } else {
            "parameters"
        };
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format!(
                "missing {noun} `{}`: {handler} takes `{shape}`",
                missing.join(", ")
            ),
        ));
    }

    for (param, typed) in expected.iter().zip(&given) {
        check_param(event, param, &typed.pat, &typed.ty, errors);
    }
}

/// The mistakes syntax can see in one parameter's type.
fn check_param(event: Event, param: &Param, pat: &Pat, ty: &Type, errors: &mut Errors) {
    let pat = pat.to_token_stream().to_string();
    let want = param.ty_text();
    let fix = format!("write `{pat}: {want}`");
    let handler = event.a_handler();
    if mentions_impl(ty.to_token_stream()) {
        errors.spanned(
            ty,
            format!("a handler cannot take `impl Trait` parameters: {fix}"),
        );
        return;
    }
    let (reference, inner) = match strip_groups(ty) {
        Type::Reference(reference) => (Some(reference), strip_groups(&reference.elem)),
        other => (None, other),
    };
    let names_param = last_segment(inner).is_some_and(|last| last == param.ty);
    match reference {
        None if param.by_ref && names_param => {
            errors.spanned(ty, format!("{handler} borrows the `{}`: {fix}", param.ty))
        }
        Some(_) if !param.by_ref && names_param => errors.spanned(
            ty,
            format!(
                "{handler} takes the `{}` by value (it is yours to keep): {fix}",
                param.ty
            ),
        ),
        Some(reference) if param.by_ref && reference.mutability.is_some() => errors.spanned(
            ty,
            format!(
                "{handler} gets a shared reference (every method of `{}` takes \
                 `&self`): {fix}",
                param.ty
            ),
        ),
        _ => {}
    }
}

/// `ty` without invisible groups and parentheses.
fn strip_groups(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => strip_groups(&group.elem),
        Type::Paren(paren) => strip_groups(&paren.elem),
        other => other,
    }
}

/// The last path segment's name, for a path type.
fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|s| s.ident.to_string())
        }
        _ => None,
    }
}

/// Whether `impl` appears anywhere in the type's tokens.
fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}
