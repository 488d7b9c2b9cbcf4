//! The `#[synchronized]` attribute of [lockutils](https://docs.rs/lockutils).
//!
//! Use it through the `lockutils` crate (`#[lockutils::synchronized("name")]`), whose docs
//! describe it; the generated code refers to `::lockutils`.
//!
//! Layout: this file is the entry point, `args.rs` parses the arguments, `expand.rs` generates
//! the code. Parsing and generation never mix.

#![warn(missing_docs)]

mod args;
mod expand;

use proc_macro::TokenStream;
use proc_macro2::TokenTree;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, LitStr, Token};

/// Runs the function with the named lock held: oslo's `@synchronized`.
///
/// See the `lockutils` crate docs for the arguments, error handling and logs.
#[proc_macro_attribute]
pub fn synchronized(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<args::Args>(args) {
        Ok(args) => args,
        Err(e) => return with_item(e, item),
    };
    match expand::expand(args, item.clone().into(), None) {
        Ok(tokens) => tokens.into(),
        Err(e) => with_item(e, item),
    }
}

/// The error, and the item unchanged, so that one mistake in the attribute does not also
/// make every use of the function an error.
fn with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    let item = proc_macro2::TokenStream::from(item);
    quote!(#error #item).into()
}

/// Defines a project-local `#[synchronized]` bound to a lock file prefix: oslo's
/// `synchronized_with_prefix`. See the `lockutils` crate docs.
#[proc_macro]
pub fn synchronized_with_prefix(input: TokenStream) -> TokenStream {
    match syn::parse::<WithPrefix>(input) {
        Ok(WithPrefix {
            attrs,
            name,
            prefix,
        }) => quote! {
            #(#attrs)*
            macro_rules! #name {
                ($($args:tt)*) => {
                    ::lockutils::__private::synchronized_prefixed! { #prefix ; $($args)* }
                };
            }
        }
        .into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct WithPrefix {
    attrs: Vec<Attribute>,
    name: Ident,
    prefix: LitStr,
}

impl Parse for WithPrefix {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        input.parse::<Token![,]>()?;
        let prefix: LitStr = input.parse()?;
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(input.error("expected `synchronized_with_prefix!(macro_name, \"prefix\")`"));
        }
        Ok(Self {
            attrs,
            name,
            prefix,
        })
    }
}

/// What a macro made by `synchronized_with_prefix!` expands to:
/// `"prefix" ; ARGS ; FUNCTION`.
#[doc(hidden)]
#[proc_macro]
pub fn synchronized_prefixed(input: TokenStream) -> TokenStream {
    let input = proc_macro2::TokenStream::from(input);
    let mut parts: Vec<Vec<TokenTree>> = vec![Vec::new()];
    for token in input {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ';' && parts.len() < 3 => parts.push(Vec::new()),
            _ => parts.last_mut().expect("never empty").push(token),
        }
    }
    let [prefix, args, item] = <[Vec<TokenTree>; 3]>::try_from(parts).unwrap_or_default();
    let collect = |tokens: Vec<TokenTree>| tokens.into_iter().collect::<proc_macro2::TokenStream>();
    let result = syn::parse2::<LitStr>(collect(prefix)).and_then(|prefix| {
        if item.is_empty() {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                "expected `(\"lock name\", options...; fn ...)`: the lock's arguments, a `;`, \
                 then the function",
            ));
        }
        let args = syn::parse2::<args::Args>(collect(args))?;
        expand::expand(args, collect(item), Some(prefix))
    });
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}
