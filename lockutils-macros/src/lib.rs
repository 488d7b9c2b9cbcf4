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

use crate::args::WithPrefix;
use proc_macro2::TokenTree;
use quote::quote;
use syn::LitStr;

/// Runs the function with the named lock held: oslo's `@synchronized`.
///
/// ```
/// use lockutils::synchronized;
///
/// #[synchronized("resize")]
/// fn resize(size: u64) -> u64 {
///     size * 2 // runs with the lock "resize" held
/// }
/// # assert_eq!(resize(2), 4);
/// ```
///
/// The function keeps its signature, attributes and docs; only the body is wrapped, and the
/// generated code adds no warning to the user's crate (`#![deny(warnings)]`,
/// `#![deny(clippy::all)]`). The lock
/// is taken before the body runs and released when it ends: by returning, by `?`, or by
/// panicking. It goes on free functions, inherent and trait-impl methods (`&self`,
/// `&mut self`, `self`), associated functions, generic functions, `unsafe fn`, any
/// visibility.
///
/// # The name
/// The first argument. A string literal takes a fast path: the lock's handle is kept after
/// the first call, so a call costs no name lookup and no allocation. Any other expression is
/// evaluated at each call, before the body, and may read the arguments and `self`:
///
/// ```
/// # struct Instance { uuid: String }
/// #[lockutils::synchronized(format!("instance-{}", instance.uuid))]
/// fn reboot(instance: &Instance) { /* one reboot per instance at a time */ }
/// # reboot(&Instance { uuid: "1".into() });
/// ```
///
/// # Options
/// Those of [`lock()`](https://docs.rs/lockutils/latest/lockutils/fn.lock.html), as
/// `key = value`, each at most once:
///
/// | option | value |
/// |---|---|
/// | `external` | `bool`: also take the inter-process lock file |
/// | `prefix` (or `lock_file_prefix`) | `&str`/`String`: the lock file prefix |
/// | `lock_path` | a path: the lock file's directory |
/// | `semaphores` | a `Semaphores` container (or reference, `LazyLock`, `Arc` of one) |
/// | `fair` | `bool`: the fair (FIFO, reentrant) lock of the name |
/// | `shared` | `bool`: the shared side of the name (the read side of its fair lock, and of the external lock): shared holders run together |
/// | `blocking` | `bool`: `false` tries once |
/// | `timeout` | `"250ms"`, `"5s"`, `"1m30s"`... or a `Duration` expression |
/// | `delay` | like `timeout`: the longest pause between tries of a timed external wait |
/// | `on_lock_error` | `"panic"` or `"return"`: see [below](#when-the-lock-is-not-taken) |
///
/// Values are expressions evaluated at each call (`on_lock_error` takes only the literals);
/// literals are checked at compile time.
///
/// # When the lock is not taken
/// The compiler decides from the function's return type `R`, seen through type aliases (the
/// name it is written with does not matter):
///
/// - `R` is `Result<T, E>` with `E: From<lockutils::Error>`: the function returns
///   `Err(e.into())`. This covers `lockutils::Error`, `std::io::Result<T>`, `anyhow::Result<T>`,
///   `Box<dyn std::error::Error + Send + Sync>`, and aliases such as
///   `type MyResult<T> = Result<T, MyError>` when `MyError: From<lockutils::Error>`.
/// - `R` is `Result<T, E>` and `E` has no `From<lockutils::Error>` (`String`, a generic `E`
///   without that bound...): a compile error that says so. Implement
///   `From<lockutils::Error> for E` (or add the bound), or write `on_lock_error = "panic"`.
/// - Anything else (no return type, a value, `Option`, `impl Trait`, a struct named
///   `SearchResult`...): the function panics, with a message naming the function, the lock
///   and the cause.
///
/// `blocking = false` and `timeout`, whose failure is a normal outcome, need the first case:
/// on a function of any other return type they are compile errors.
///
/// The option `on_lock_error` makes the choice explicit instead:
///
/// | `on_lock_error` | a lock failure |
/// |---|---|
/// | `"panic"` | panics, whatever the return type (a `Result` too); allowed with `blocking = false` and `timeout` |
/// | `"return"` | returns `Err(e.into())`; the return type must be `Result<_, E>` with `E: From<lockutils::Error>` (compile error otherwise) |
///
/// ```
/// #[lockutils::synchronized("report", blocking = false)]
/// fn report() -> std::io::Result<()> {
///     Ok(())
/// }
///
/// #[derive(Debug)]
/// struct SearchResult(u32); // not a `Result`: a lock failure panics
///
/// #[lockutils::synchronized("search")]
/// fn search() -> SearchResult {
///     SearchResult(3)
/// }
///
/// // `String` has no `From<lockutils::Error>`: say what to do.
/// #[lockutils::synchronized("name", timeout = "5s", on_lock_error = "panic")]
/// fn name() -> Result<String, String> {
///     Ok("nova".into())
/// }
/// # report().unwrap();
/// # search();
/// # name().unwrap();
/// ```
///
/// # Reentrancy
/// The default lock is not reentrant (as in oslo): a synchronized function that calls itself,
/// or another function synchronized on the same name, waits forever. With `fair = true` the
/// holding thread may take it again.
///
/// # Logs
/// oslo's `synchronized` DEBUG lines on the `lockutils` target, with the function's qualified
/// name (module, type, method): `Acquiring lock "NAME" by "FUNC"`,
/// `Lock "NAME" acquired by "FUNC" :: waited 0.000s`,
/// `Lock "NAME" "released" by "FUNC" :: held 0.000s`, or `"unacquired"` with `held N/A` when
/// the lock was not taken. Times are measured only when those lines are on.
///
/// # `async fn`
/// On an `async fn` (free or method) the lock is awaited
/// ([`acquire_async`](https://docs.rs/lockutils/latest/lockutils/struct.LockBuilder.html#method.acquire_async)):
/// no executor thread blocks, and the function's future stays `Send`. With `external`, a
/// helper thread waits for the lock file in the kernel on the task's behalf.
///
/// Holders are tasks, and tasks are not reentrant, fair lock or not (thread reentrancy does
/// not carry over). A synchronized function (async or not) called from inside the body of a
/// synchronized `async fn` of the same lock, in the same task, fails at once with
/// `Error::InvalidOptions` (returned or a panic, as above), instead of waiting for itself
/// forever; entering again instead would let sibling futures of the task (`join!`) in
/// together. Another task (a spawned one) waits as usual. A plain `lock(..).acquire_async()`
/// of the same lock inside the body is not covered: it waits forever.
///
/// # Not supported
/// `const fn` is a compile error.
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

/// Defines a project-local `synchronized!` bound to a lock file prefix: oslo's
/// `synchronized = lockutils.synchronized_with_prefix('nova')`.
///
/// Stable Rust cannot make an attribute from a `macro_rules!` macro, so the project-local
/// macro wraps the function instead: its arguments are those of [`macro@synchronized`]
/// (without `prefix`), then a `;`, then the function. It works on free functions and, as an
/// item, inside `impl` blocks.
///
/// ```
/// // Once, in the project (`#[macro_export]` or a `pub(crate) use` to share it further):
/// lockutils::synchronized_with_prefix!(synchronized, "nova");
///
/// // Anywhere after it:
/// synchronized!("mylock", external = true, lock_path = dir;
///     /// Runs with the lock file `nova-mylock` in `dir` held.
///     fn bar(dir: &std::path::Path) -> std::io::Result<()> {
///         Ok(())
///     }
/// );
///
/// struct Compute;
///
/// impl Compute {
///     synchronized!("resize";
///         pub fn resize(&self) -> u32 {
///             2
///         }
///     );
/// }
/// # let dir = tempfile::tempdir().unwrap();
/// # bar(dir.path()).unwrap();
/// # assert_eq!(Compute.resize(), 2);
/// ```
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
