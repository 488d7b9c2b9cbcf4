//! Code generation for `#[synchronized]`. Arguments arrive parsed (see `args.rs`).
//!
//! The signature is kept exactly as written; only the body is wrapped:
//!
//! ```text
//! fn f(..) -> R {
//!     #![inner attributes of the body]
//!     fn __lockutils_here() {}                    // names the function in logs
//!     let __lockutils_guard = match take the lock {
//!         Ok(guard) => guard,
//!         Err(error) => what R asks for (see `Failure`),
//!     };
//!     { original statements }                     // its value is the function's value
//! }
//! ```
//!
//! The braces around the original statements are the macro's (located where the user's are),
//! so no lint sees "unnecessary braces" in the user's code.
//!
//! What a lock failure becomes is decided by the compiler from the return type, not by the
//! macro from its name (a macro cannot see through `type MyResult<T> = ...`): see
//! `lockutils::__private::Returns`.
//!
//! Generated code names everything by absolute path into `::lockutils::__private`, so user
//! imports cannot break it.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{AttrStyle, Block, Expr, ExprLit, Ident, ItemFn, Lit, LitStr, ReturnType, Token, Type};

use crate::args::{Args, DurationArg, Name, OnLockError};

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
    let failure = Failure::choose(&args, &function.sig.output)?;
    if let (Some(bound), Some((key, _))) = (&bound_prefix, &args.options.prefix) {
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
    let on_failure = failure.tokens();
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    let outer = attrs.iter().filter(|a| matches!(a.style, AttrStyle::Outer));
    let inner = attrs
        .iter()
        .filter(|a| matches!(a.style, AttrStyle::Inner(_)));
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
    let body = user_block(&block);
    let body = if is_async {
        // Polled inside a scope that marks the lock as held by this task (see
        // `__private::Scoped`), so that a nested call on the same lock can tell.
        let scoped = quote_spanned! {Span::mixed_site()=>
            ::lockutils::__private::scoped(&__lockutils_guard, async move #body).await
        };
        quote! { #scoped }
    } else {
        body
    };
    Ok(quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #guard
            #body
        }
    })
}

/// The user's block, its statements as written, in braces that sit where the user's braces
/// are (so errors about the body point there) but belong to the expansion. The braces are the
/// macro's, so lints about them (`unused_braces` on a one-expression body, which `cargo fix`
/// would "fix" into code that does not compile) do not fire in the user's crate; the
/// statements keep their spans, so lints about the user's code still do. The block still makes
/// a scope: items declared in the body do not clash with the generated ones.
fn user_block(block: &Block) -> TokenStream {
    let braces = block.brace_token.span.join();
    let stmts = &block.stmts;
    let mut group = Group::new(Delimiter::Brace, quote! { #(#stmts)* });
    group.set_span(braces.resolved_at(Span::mixed_site()));
    TokenTree::Group(group).into()
}

/// What the generated code does when the lock is not taken.
enum Failure {
    /// Panic, whatever the function returns: no return type, `!`, `impl Trait`, or
    /// `on_lock_error = "panic"`.
    Panic,
    /// Return `Err(e.into())`; the return type must be `Result<_, E: From<Error>>`, which the
    /// compiler checks (`ReturnsLockError`), with the error spanned at `key`.
    Return { key: Ident },
    /// Decided by the type system from the return type, written out: `Err(e.into())` from a
    /// `Result<_, E>` (through aliases too), a panic otherwise (`__private::Returns`).
    ByType(Box<Type>),
}

impl Failure {
    fn choose(args: &Args, output: &ReturnType) -> syn::Result<Self> {
        if let Some((key, on)) = &args.options.on_lock_error {
            return match on {
                OnLockError::Panic => Ok(Self::Panic),
                OnLockError::Return if matches!(output, ReturnType::Default) => Err(needs_result(
                    key,
                    "`on_lock_error = \"return\"`",
                    "a lock it does not get",
                )),
                OnLockError::Return => Ok(Self::Return { key: key.clone() }),
            };
        }
        // Options that make not getting the lock a normal outcome need a `Result`.
        let may_fail = match &args.options.blocking {
            Some((key, value)) => {
                let always_blocks = matches!(
                    value,
                    Expr::Lit(ExprLit { lit: Lit::Bool(b), .. }) if b.value
                );
                (!always_blocks).then_some((key, "`blocking = false`", "a lock it does not get"))
            }
            None => None,
        }
        .or_else(|| {
            args.options
                .timeout
                .as_ref()
                .map(|(key, _)| (key, "`timeout`", "a lock it does not get in time"))
        });
        let ty = match output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(ty),
        };
        if let Some((key, option, what)) = may_fail {
            return match ty {
                Some(ty) if !surely_not_a_result(ty) => Ok(Self::Return { key: key.clone() }),
                _ => Err(needs_result(key, option, what)),
            };
        }
        Ok(match ty {
            Some(ty) if !surely_not_a_result(ty) => Self::ByType(Box::new(nameable(ty))),
            _ => Self::Panic,
        })
    }

    /// The expression of the failure arm; `error` is the `lockutils::Error`.
    fn tokens(&self) -> TokenStream {
        match self {
            Self::Panic => quote_spanned! {Span::mixed_site()=>
                ::lockutils::__private::lock_failed(error, __lockutils_here)
            },
            Self::Return { key } => {
                // Where the option is written, so that a wrong return type is reported there.
                let at = key.span().resolved_at(Span::mixed_site());
                quote_spanned! {at=>
                    return ::lockutils::__private::ReturnsLockError::lock_error(error)
                }
            }
            Self::ByType(ty) => {
                // Where the return type is written, so that a `Result` whose error type has no
                // `From<lockutils::Error>` is reported there.
                let at = ty.span().resolved_at(Span::mixed_site());
                let lock_failure = Ident::new("lock_failure", at);
                quote_spanned! {Span::mixed_site()=>
                    {
                        #[allow(unused_imports)]
                        use ::lockutils::__private::{
                            FailureAsErr as _, FailureAsPanic as _, FailureWithoutFrom as _,
                        };
                        return (&&::lockutils::__private::Returns::<#ty>::new())
                            .#lock_failure(error, __lockutils_here)
                    }
                }
            }
        }
    }
}

fn needs_result(key: &Ident, option: &str, what: &str) -> syn::Error {
    syn::Error::new(
        key.span(),
        format!(
            "{option} needs a function that returns `Result<_, E>` with \
             `E: From<lockutils::Error>`: {what} is then returned as an error instead of a \
             panic"
        ),
    )
}

/// Return types that cannot be a `Result` whatever the names in them mean: `()`, `!`,
/// `impl Trait`, tuples, references, pointers, arrays, slices, `fn`, `dyn Trait`.
fn surely_not_a_result(ty: &Type) -> bool {
    match ty {
        Type::Paren(inner) => surely_not_a_result(&inner.elem),
        Type::Group(inner) => surely_not_a_result(&inner.elem),
        Type::Path(_) | Type::Macro(_) | Type::Verbatim(_) | Type::Infer(_) => false,
        _ => true,
    }
}

/// The return type as a type argument written in the body: `impl Trait` is not allowed
/// there, and is inferred instead (`_`); what is left decides.
fn nameable(ty: &Type) -> Type {
    struct Infer;
    impl syn::visit_mut::VisitMut for Infer {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(t) = ty {
                let span = t.impl_token.span;
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: Token![_](span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Infer, &mut ty);
    ty
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

/// For a literal name with no options: a reference to the name's `StaticLock`.
fn fast_path(args: &Args, bound_prefix: Option<&LitStr>) -> Option<TokenStream> {
    let Name::Literal(lit) = &args.name else {
        return None;
    };
    let no_options = bound_prefix.is_none()
        && args.options.external.is_none()
        && args.options.prefix.is_none()
        && args.options.lock_path.is_none()
        && args.options.semaphores.is_none()
        && args.options.fair.is_none()
        && args.options.shared.is_none()
        && args.options.blocking.is_none()
        && args.options.timeout.is_none()
        && args.options.delay.is_none();
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
    if let Some(e) = &args.options.external {
        option(quote_spanned! {e.span()=> .external(#e) });
    }
    if let Some(prefix) = bound_prefix {
        option(quote! { .prefix(#prefix) });
    }
    if let Some((_, e)) = &args.options.prefix {
        option(quote_spanned! {e.span()=> .prefix(::core::convert::AsRef::<str>::as_ref(&(#e))) });
    }
    if let Some(e) = &args.options.lock_path {
        option(quote_spanned! {e.span()=> .lock_path(&(#e)) });
    }
    if let Some(e) = &args.options.semaphores {
        // Deref coercion accepts a container, a reference, a `LazyLock` or an `Arc` of one.
        option(quote_spanned! {e.span()=> .semaphores(&(#e)) });
    }
    if let Some(e) = &args.options.fair {
        option(quote_spanned! {e.span()=> .fair(#e) });
    }
    if let Some(e) = &args.options.shared {
        option(quote_spanned! {e.span()=> .shared(#e) });
    }
    if let Some((_, e)) = &args.options.blocking {
        option(quote_spanned! {e.span()=> .blocking(#e) });
    }
    if let Some((_, d)) = &args.options.timeout {
        let d = duration(d);
        option(quote! { .timeout(#d) });
    }
    if let Some(d) = &args.options.delay {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> Type {
        syn::parse_str(text).unwrap()
    }

    #[test]
    fn only_paths_are_left_to_the_type_system() {
        for not_a_result in [
            "()",
            "!",
            "impl Iterator<Item = u8>",
            "(u8, u8)",
            "&str",
            "[u8; 2]",
        ] {
            assert!(surely_not_a_result(&ty(not_a_result)), "{not_a_result}");
        }
        for maybe in [
            "Result<u8, E>",
            "MyResult<u8>",
            "SearchResult",
            "u32",
            "Self",
        ] {
            assert!(!surely_not_a_result(&ty(maybe)), "{maybe}");
        }
    }

    #[test]
    fn impl_trait_is_inferred_where_the_type_is_named() {
        let named = nameable(&ty("Result<impl Iterator<Item = impl Copy>, E>"));
        assert_eq!(quote!(#named).to_string(), quote!(Result<_, E>).to_string());
    }
}
