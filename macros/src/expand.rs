//! Generating the companion of a checked handler.
//!
//! `#[on("message")] async fn echo(conn: &Conn, msg: Message) -> R` becomes
//! the function, unchanged, plus
//!
//! ```text
//! #[doc(hidden)] pub struct echo {}
//! impl ::wharf::__private::Companion for echo {
//!     const NAME: &'static str = "echo";
//!     const EVENT: Event = Event::Message;
//!     fn slot(&self) -> Slot {
//!         Slot::Message(|conn, msg| Box::pin(async move {
//!             let conn_: &Conn = conn;      // the user's type, checked here
//!             let msg_: Message = msg;
//!             let ret = echo(conn_, msg_).await;
//!             reply(conn, Reply::into_reply(ret)).await
//!         }))
//!     }
//! }
//! ```
//!
//! The closure captures nothing, so it coerces to the runtime's higher-ranked
//! function pointer. Where the user can get a type wrong, the generated
//! tokens carry the span of the user's own tokens, so rustc points there:
//! a parameter type that is not the event's at that parameter ("expected
//! `&String`, found `&Conn`"), a return type without the event's adapter
//! trait at the return type (the runtime's `#[diagnostic::on_unimplemented]`
//! text), a future that is not `Send` at the function's name.

use proc_macro2::{Ident, Spacing, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::{FnArg, ItemFn, Path, ReturnType};

use crate::event::Event;
use crate::spans;

/// The companion struct and its `Companion` impl for a handler that passed
/// every check.
pub(crate) fn companion(func: &ItemFn, event: Event, krate: &Path) -> TokenStream {
    let slot = slot(func, event, krate);
    companion_with(func, event, krate, slot)
}

/// A companion whose `slot` never runs, emitted next to the errors of a
/// handler that failed a check: `handlers![...]` lists that name it still
/// resolve, so the attribute's error is the only one the user sees.
pub(crate) fn stub(func: &ItemFn, event: Event, krate: &Path) -> TokenStream {
    let variant = event.variant();
    let ignored = event.params().iter().map(|_| quote!(_));
    companion_with(
        func,
        event,
        krate,
        quote!(#krate::__private::Slot::#variant(|#(#ignored),*| ::core::unreachable!())),
    )
}

fn companion_with(func: &ItemFn, event: Event, krate: &Path, slot: TokenStream) -> TokenStream {
    let ident = &func.sig.ident;
    let vis = &func.vis;
    let name = ident.unraw().to_string();
    let variant = event.variant();
    // The companion exists exactly when the function does.
    let cfgs: Vec<_> = func
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect();
    quote! {
        #(#cfgs)*
        #[allow(non_camel_case_types, unreachable_pub)]
        #[doc(hidden)]
        #[derive(::core::clone::Clone, ::core::marker::Copy, ::core::fmt::Debug)]
        #vis struct #ident {}

        #(#cfgs)*
        impl #krate::__private::Companion for #ident {
            const NAME: &'static str = #name;
            const EVENT: #krate::__private::Event = #krate::__private::Event::#variant;
            fn slot(&self) -> #krate::__private::Slot {
                #slot
            }
        }
    }
}

/// `Slot::X(|..| Box::pin(async move { .. }))`.
fn slot(func: &ItemFn, event: Event, krate: &Path) -> TokenStream {
    let ident = &func.sig.ident;
    let variant = event.variant();
    let runtime_args: Vec<Ident> = event
        .params()
        .iter()
        .map(|param| format_ident!("__wharf_{}", param.name))
        .collect();
    let user_args: Vec<Ident> = (0..runtime_args.len())
        .map(|i| format_ident!("__wharf_arg{}", i))
        .collect();
    // `let __wharf_arg0: <the user's type> = __wharf_conn;` with the right
    // side spanned on the user's type, so a mismatch is reported there.
    let bindings = func
        .sig
        .inputs
        .iter()
        .zip(&runtime_args)
        .zip(&user_args)
        .map(|((arg, runtime), user)| {
            let FnArg::Typed(typed) = arg else {
                unreachable!("receivers are rejected before expansion")
            };
            let ty = elide_lifetimes(typed.ty.to_token_stream());
            let value = spans::over(quote!((#runtime,).0), spans::range(&typed.ty));
            quote!(let #user: #ty = #value;)
        });

    let ret_range = match &func.sig.output {
        ReturnType::Type(_, ty) => spans::range(ty),
        ReturnType::Default => (Span::call_site(), Span::call_site()),
    };
    let ret = Ident::new("__wharf_ret", Span::call_site());
    // `(ret,).0` is `ret`, spanned over the return type: the adapter trait's
    // `on_unimplemented` message underlines the user's return type.
    let returned = spans::over(quote!((#ret,).0), ret_range);
    let private = quote!(#krate::__private);
    let finish = match event {
        Event::Upgrade => quote!(#private::Verdict::into_verdict(#returned)),
        Event::Connect | Event::Close => quote!(#private::Outcome::into_result(#returned)),
        Event::Message => {
            let reply = quote!(#private::Reply::into_reply(#returned));
            let conn = &runtime_args[0];
            quote!(#private::reply(#conn, #reply).await)
        }
    };
    // Spanned on the function's name: a future that is not `Send` is
    // reported there (the runtime's futures must be `Send`).
    let boxed = quote_spanned! {ident.span()=>
        ::std::boxed::Box::pin(async move {
            #(#bindings)*
            let #ret = #ident(#(#user_args),*).await;
            #finish
        })
    };
    quote! {
        #private::Slot::#variant(|#(#runtime_args),*| #boxed)
    }
}

/// Replaces named lifetimes (`'a`, not `'static`) with `'_`: the user's
/// parameter types are reused inside the generated closure, where the
/// function's lifetime parameters are not declared.
fn elide_lifetimes(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut after_quote = false;
    for token in tokens {
        let token = match token {
            TokenTree::Ident(ident) if after_quote && ident != "static" => {
                TokenTree::Ident(Ident::new("_", ident.span()))
            }
            TokenTree::Group(group) => {
                let mut new =
                    proc_macro2::Group::new(group.delimiter(), elide_lifetimes(group.stream()));
                new.set_span(group.span());
                TokenTree::Group(new)
            }
            other => other,
        };
        after_quote = matches!(&token, TokenTree::Punct(p) if p.as_char() == '\'' && p.spacing() == Spacing::Joint);
        out.push(token);
    }
    out.into_iter().collect()
}
