//! `handlers![...]`: the list of annotated functions a route runs, with the
//! one-handler-per-event rule checked at compile time.
//!
//! `wharf::handlers![a, b]` calls this as `handlers!($crate; a, b)` and gets
//!
//! ```text
//! {
//!     type __WharfHandler0 = a;
//!     type __WharfHandler1 = b;
//!     const _: () = {
//!         let e0 = <__WharfHandler0 as Companion>::EVENT;
//!         let e1 = <__WharfHandler1 as Companion>::EVENT;
//!         if e0.same(e1) { panic!("`a` and `b` are both `connect` handlers ...") }
//!     };
//!     $crate::HandlerFns::new().on(__WharfHandler0 {}).on(__WharfHandler1 {})
//! }
//! ```
//!
//! Each path is named exactly once (in its alias): a path that is not an
//! annotated function is one error, not one per use. The panic of a
//! duplicate is spanned on the later path, so the error points at it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, ToTokens};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Path, Token};

use crate::event::Event;
use crate::spans;

/// The macro's expansion.
pub(crate) fn handlers(input: TokenStream) -> TokenStream {
    match expand(input) {
        Ok(tokens) => tokens,
        Err(error) => error.to_compile_error(),
    }
}

fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let mut tokens = input.into_iter();
    let mut krate = TokenStream::new();
    let mut found_semi = false;
    for token in tokens.by_ref() {
        if matches!(&token, TokenTree::Punct(p) if p.as_char() == ';') {
            found_semi = true;
            break;
        }
        krate.extend([token]);
    }
    if !found_semi || krate.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            "use `wharf::handlers![a, b, ...]`: this macro is its implementation",
        ));
    }
    let paths = Punctuated::<Path, Token![,]>::parse_terminated.parse2(tokens.collect())?;
    let paths: Vec<Path> = paths.into_iter().collect();

    let private = quote!(#krate::__private);
    // Spanned on the user's path: an error about a listed name points at it.
    let aliases: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| format_ident!("__WharfHandler{}", i, span = path.span()))
        .collect();
    let events: Vec<_> = (0..paths.len())
        .map(|i| format_ident!("__wharf_event{}", i))
        .collect();

    let mut errors = TokenStream::new();
    let mut checks = TokenStream::new();
    for later in 0..paths.len() {
        for earlier in 0..later {
            let (first, second) = (&paths[earlier], &paths[later]);
            if same_path(first, second) {
                errors.extend(
                    syn::Error::new_spanned(
                        second,
                        format!("`{}` is listed twice: remove one", display(second)),
                    )
                    .to_compile_error(),
                );
                continue;
            }
            let arms = Event::ALL.iter().map(|event| {
                let variant = event.variant();
                let message = format!(
                    "`{}` and `{}` are both `{}` handlers, and a route runs one handler per \
                     event: remove one of them from `handlers![...]`, or merge them into one \
                     function",
                    display(first),
                    display(second),
                    event.name(),
                );
                let panic = spans::over(quote!(::core::panic!(#message)), spans::range(second));
                quote!(#private::Event::#variant => #panic,)
            });
            let (e1, e2) = (&events[earlier], &events[later]);
            checks.extend(quote! {
                if #e1.same(#e2) {
                    match #e2 { #(#arms)* }
                }
            });
        }
    }

    let duplicate_check = if paths.len() > 1 {
        quote! {
            const _: () = {
                #(let #events = <#aliases as #private::Companion>::EVENT;)*
                #checks
            };
        }
    } else {
        TokenStream::new()
    };
    let adds = aliases.iter().zip(&paths).map(|(alias, path)| {
        let companion = spans::over(quote!(#alias {}), spans::range(path));
        quote!(.on(#companion))
    });
    Ok(quote! {
        {
            #errors
            #(type #aliases = #paths;)*
            #duplicate_check
            #krate::HandlerFns::new() #(#adds)*
        }
    })
}

/// Whether two paths are written the same (`join` twice, `chat::join` twice).
fn same_path(a: &Path, b: &Path) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

/// A path as the user wrote it, for messages: `chat::join`.
fn display(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}
