//! Code generation for `#[synchronized]`. Arguments arrive parsed (see `args.rs`).
//!
//! The signature is kept exactly as written; only the body is wrapped:
//!
//! ```text
//! fn f(..) -> R {
//!     fn __lockutils_here() {}                    // names the function in logs
//!     let __lockutils_guard = { take the lock; on failure return Err(e.into()) or panic };
//!     { original body }                           // its value is the function's value
//! }
//! ```
//!
//! Generated code names everything by absolute path into `::lockutils::__private`, so user
//! imports cannot break it.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, ReturnType, Type};

use crate::args::{Args, DurationArg, Name};

/// Expands `#[synchronized(args)]` on `item`; `bound_prefix` is the prefix bound by
/// `synchronized_with_prefix!`, if any.
pub(crate) fn expand(
    args: Args,
    item: TokenStream,
    bound_prefix: Option<LitStr>,
) -> syn::Result<TokenStream> {
    let function = parse_function(item)?;
    if let Some(constness) = &function.sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "#[synchronized] cannot go on a `const fn`: taking a lock is not a const operation",
        ));
    }
    let is_async = function.sig.asyncness.is_some();
    let returns_result = returns_result(&function.sig.output);
    if !returns_result {
        refuse_failure_on_infallible(&args)?;
    }
    if let (Some(bound), Some((key, _))) = (&bound_prefix, &args.prefix) {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "the prefix is already bound to {:?} by `synchronized_with_prefix!`",
                bound.value()
            ),
        ));
    }

    let fast = fast_path(&args, bound_prefix.as_ref());
    let builder = builder(&args, bound_prefix.as_ref());
    let on_failure = if returns_result {
        quote_spanned! {Span::mixed_site()=>
            return ::core::result::Result::Err(::core::convert::From::from(error))
        }
    } else {
        quote_spanned! {Span::mixed_site()=>
            ::lockutils::__private::lock_failed(error, __lockutils_here)
        }
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    // Mixed-site hygiene: the user's body cannot see (or clash with) these locals.
    let guard = match fast {
        _ if is_async => quote_spanned! {Span::mixed_site()=>
            fn __lockutils_here() {}
            let __lockutils_guard =
                match ::lockutils::__private::enter_async(#builder, __lockutils_here).await {
                    ::core::result::Result::Ok(guard) => guard,
                    ::core::result::Result::Err(error) => #on_failure,
                };
        },
        Some(site) => quote_spanned! {Span::mixed_site()=>
            fn __lockutils_here() {}
            let __lockutils_guard =
                match ::lockutils::__private::enter_static(#site, __lockutils_here) {
                    ::core::result::Result::Ok(guard) => guard,
                    ::core::result::Result::Err(error) => #on_failure,
                };
        },
        None => quote_spanned! {Span::mixed_site()=>
            fn __lockutils_here() {}
            let __lockutils_guard =
                match ::lockutils::__private::enter(#builder, __lockutils_here) {
                    ::core::result::Result::Ok(guard) => guard,
                    ::core::result::Result::Err(error) => #on_failure,
                };
        },
    };
    let body = if is_async {
        // Polled inside a scope that marks the lock as held by this task (see
        // `__private::Scoped`), so that a nested call on the same lock can tell.
        let scoped = quote_spanned! {Span::mixed_site()=>
            ::lockutils::__private::scoped(&__lockutils_guard, async move #block).await
        };
        quote! { #scoped }
    } else {
        quote! { #block }
    };
    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            #guard
            #body
        }
    })
}

fn parse_function(item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => Ok(function),
        Err(_) => {
            if let Ok(declaration) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
                return Err(syn::Error::new(
                    declaration.sig.ident.span(),
                    "#[synchronized] needs a function with a body; put it on the \
                     implementations, not on the trait's declaration",
                ));
            }
            Err(syn::Error::new(
                first_token_span(&item),
                "#[synchronized] goes on a function (free function, method or associated \
                 function)",
            ))
        }
    }
}

fn first_token_span(item: &TokenStream) -> Span {
    item.clone()
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |t| t.span())
}

/// Whether the function returns a `Result` (any path whose last segment ends in `Result`:
/// `Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`...). Lock failures are returned as
/// `Err(e.into())` from those; other functions panic on them.
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(path) => path
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident.to_string().ends_with("Result")),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

/// A function without a `Result` can only panic when it does not get its lock, so options
/// that make not getting it a normal outcome are refused.
fn refuse_failure_on_infallible(args: &Args) -> syn::Result<()> {
    if let Some((key, value)) = &args.blocking {
        let always_blocks = matches!(
            value,
            Expr::Lit(ExprLit {
                lit: Lit::Bool(b),
                ..
            }) if b.value
        );
        if !always_blocks {
            return Err(syn::Error::new(
                key.span(),
                "`blocking = false` needs a function that returns `Result<_, E>` with \
                 `E: From<lockutils::Error>`: a lock it does not get is then returned as an \
                 error instead of a panic",
            ));
        }
    }
    if let Some((key, _)) = &args.timeout {
        return Err(syn::Error::new(
            key.span(),
            "`timeout` needs a function that returns `Result<_, E>` with \
             `E: From<lockutils::Error>`: a lock it does not get in time is then returned as an \
             error instead of a panic",
        ));
    }
    Ok(())
}

/// For a literal name with no options: a reference to the name's `StaticLock`.
fn fast_path(args: &Args, bound_prefix: Option<&LitStr>) -> Option<TokenStream> {
    let Name::Literal(lit) = &args.name else {
        return None;
    };
    let no_options = bound_prefix.is_none()
        && args.external.is_none()
        && args.prefix.is_none()
        && args.lock_path.is_none()
        && args.semaphores.is_none()
        && args.fair.is_none()
        && args.blocking.is_none()
        && args.timeout.is_none()
        && args.delay.is_none();
    no_options.then(|| static_site(lit))
}

fn static_site(lit: &LitStr) -> TokenStream {
    quote! {
        {
            static __LOCKUTILS_SITE: ::lockutils::__private::StaticLock =
                ::lockutils::__private::StaticLock::new(#lit);
            &__LOCKUTILS_SITE
        }
    }
}

/// The `LockBuilder` expression. Each user expression keeps its own span, so a type error in
/// it is reported where the user wrote it.
fn builder(args: &Args, bound_prefix: Option<&LitStr>) -> TokenStream {
    let mut builder = match &args.name {
        Name::Literal(lit) => {
            let site = static_site(lit);
            quote! { #site.lock() }
        }
        Name::Expr(expr) => quote_spanned! {expr.span()=>
            ::lockutils::lock(::core::convert::AsRef::<str>::as_ref(&(#expr)))
        },
    };
    let mut option = |tokens: TokenStream| builder = quote! { #builder #tokens };
    if let Some(e) = &args.external {
        option(quote_spanned! {e.span()=> .external(#e) });
    }
    if let Some(prefix) = bound_prefix {
        option(quote! { .prefix(#prefix) });
    }
    if let Some((_, e)) = &args.prefix {
        option(quote_spanned! {e.span()=> .prefix(::core::convert::AsRef::<str>::as_ref(&(#e))) });
    }
    if let Some(e) = &args.lock_path {
        option(quote_spanned! {e.span()=> .lock_path(&(#e)) });
    }
    if let Some(e) = &args.semaphores {
        // Deref coercion accepts a container, a reference, a `LazyLock` or an `Arc` of one.
        option(quote_spanned! {e.span()=> .semaphores(&(#e)) });
    }
    if let Some(e) = &args.fair {
        option(quote_spanned! {e.span()=> .fair(#e) });
    }
    if let Some((_, e)) = &args.blocking {
        option(quote_spanned! {e.span()=> .blocking(#e) });
    }
    if let Some((_, d)) = &args.timeout {
        let d = duration(d);
        option(quote! { .timeout(#d) });
    }
    if let Some(d) = &args.delay {
        let d = duration(d);
        option(quote! { .delay(#d) });
    }
    builder
}

fn duration(arg: &DurationArg) -> TokenStream {
    match arg {
        DurationArg::Literal { secs, nanos, span } => {
            quote_spanned! {*span=> ::core::time::Duration::new(#secs, #nanos) }
        }
        DurationArg::Expr(e) => quote_spanned! {e.span()=> (#e) },
    }
}
