//! Parsing of `#[synchronized(...)]` arguments. Nothing here generates code.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitStr, Token};

/// The options, in the order the docs list them.
const OPTIONS: &[&str] = &[
    "external",
    "prefix",
    "lock_file_prefix",
    "lock_path",
    "semaphores",
    "fair",
    "shared",
    "blocking",
    "timeout",
    "delay",
    "on_lock_error",
];

/// The lock name: a string literal takes the fast path (no lookup per call).
pub(crate) enum Name {
    Literal(LitStr),
    Expr(Expr),
}

/// A duration: a literal like `"250ms"`, parsed here, or a `Duration` expression.
pub(crate) enum DurationArg {
    Literal { secs: u64, nanos: u32, span: Span },
    Expr(Expr),
}

/// `on_lock_error = "..."`: what a lock failure becomes, when not left to the return type.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLockError {
    /// `"panic"`: panic, whatever the function returns.
    Panic,
    /// `"return"`: `Err(e.into())`; the function must return `Result<_, E: From<Error>>`.
    Return,
}

/// Parsed `#[synchronized(...)]` arguments: the lock name, then the options.
pub(crate) struct Args {
    pub name: Name,
    pub options: Options,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let mut options = Options::default();
        while !input.is_empty() {
            if input.peek(Ident) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                options.set(key, value)?;
            } else {
                let expr: Expr = input.parse()?;
                if name.is_some() {
                    return Err(syn::Error::new(
                        expr.span(),
                        "the lock name is given once; options are written `key = value`",
                    ));
                }
                if let Some(first) = &options.first {
                    return Err(syn::Error::new(
                        first.span(),
                        "the lock name comes first: #[synchronized(\"name\", option = ...)]",
                    ));
                }
                name = Some(lock_name(expr)?);
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let name = name.ok_or_else(|| {
            syn::Error::new(
                options
                    .first
                    .as_ref()
                    .map_or_else(Span::call_site, Ident::span),
                "missing the lock name: #[synchronized(\"name\")] or #[synchronized(expression)]",
            )
        })?;
        Ok(Args { name, options })
    }
}

fn lock_name(expr: Expr) -> syn::Result<Name> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(Name::Literal(lit)),
        Expr::Lit(lit) => Err(syn::Error::new(
            lit.span(),
            "the lock name must be a string or an expression giving one (`&str`, `String`)",
        )),
        other => Ok(Name::Expr(other)),
    }
}

/// The options, each as written (`key = value`), in one place: parsed by [`Options::set`],
/// read by the expansion.
#[derive(Default)]
pub(crate) struct Options {
    /// The first option's key (errors about the name's position point at it).
    first: Option<Ident>,
    pub external: Option<Expr>,
    /// The key as written (`prefix` or `lock_file_prefix`) and the value.
    pub prefix: Option<(Ident, Expr)>,
    pub lock_path: Option<Expr>,
    pub semaphores: Option<Expr>,
    pub fair: Option<Expr>,
    pub shared: Option<Expr>,
    pub blocking: Option<(Ident, Expr)>,
    pub timeout: Option<(Ident, DurationArg)>,
    pub delay: Option<DurationArg>,
    pub on_lock_error: Option<(Ident, OnLockError)>,
}

impl Options {
    fn set(&mut self, key: Ident, value: Expr) -> syn::Result<()> {
        let text = key.to_string();
        let duplicate = match text.as_str() {
            "external" => put(&mut self.external, bool_arg(value)?),
            "prefix" | "lock_file_prefix" => {
                put(&mut self.prefix, (key.clone(), str_arg(value, "a prefix")?))
            }
            "lock_path" => put(&mut self.lock_path, str_arg(value, "a lock directory")?),
            "semaphores" => put(&mut self.semaphores, container_arg(value)?),
            "fair" => put(&mut self.fair, bool_arg(value)?),
            "shared" => put(&mut self.shared, bool_arg(value)?),
            "blocking" => put(&mut self.blocking, (key.clone(), bool_arg(value)?)),
            "timeout" => put(&mut self.timeout, (key.clone(), duration_arg(value)?)),
            "delay" => put(&mut self.delay, duration_arg(value)?),
            "on_lock_error" => put(
                &mut self.on_lock_error,
                (key.clone(), on_lock_error(value)?),
            ),
            _ => return Err(unknown_option(&key)),
        };
        if duplicate {
            let what = if text == "lock_file_prefix" {
                "prefix"
            } else {
                &text
            };
            return Err(syn::Error::new(
                key.span(),
                format!("`{what}` is given more than once"),
            ));
        }
        self.first.get_or_insert(key);
        Ok(())
    }
}

/// Stores `value`; `true` if there already was one.
fn put<T>(slot: &mut Option<T>, value: T) -> bool {
    slot.replace(value).is_some()
}

fn unknown_option(key: &Ident) -> syn::Error {
    let text = key.to_string();
    let near = OPTIONS
        .iter()
        .map(|o| (edit_distance(&text, o), *o))
        .filter(|&(d, _)| d <= 2 + text.len() / 4)
        .min();
    let hint = match near {
        Some((_, option)) => format!("; did you mean `{option}`?"),
        None => format!("; the options are {}", OPTIONS.join(", ")),
    };
    syn::Error::new(
        key.span(),
        format!("unknown #[synchronized] option `{text}`{hint}"),
    )
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        _ => None,
    }
}

fn bool_arg(value: Expr) -> syn::Result<Expr> {
    match literal(&value) {
        Some(Lit::Bool(_)) | None => Ok(value),
        Some(other) => Err(syn::Error::new(
            other.span(),
            "expected `true` or `false` (or an expression giving a `bool`)",
        )),
    }
}

fn str_arg(value: Expr, what: &str) -> syn::Result<Expr> {
    match literal(&value) {
        Some(Lit::Str(_)) | None => Ok(value),
        Some(other) => Err(syn::Error::new(
            other.span(),
            format!("expected {what}: a string, or an expression giving one"),
        )),
    }
}

fn container_arg(value: Expr) -> syn::Result<Expr> {
    match literal(&value) {
        None => Ok(value),
        Some(other) => Err(syn::Error::new(
            other.span(),
            "expected a `lockutils::Semaphores` container (for example a `static` one)",
        )),
    }
}

fn on_lock_error(value: Expr) -> syn::Result<OnLockError> {
    match literal(&value) {
        Some(Lit::Str(s)) if s.value() == "panic" => Ok(OnLockError::Panic),
        Some(Lit::Str(s)) if s.value() == "return" => Ok(OnLockError::Return),
        _ => Err(syn::Error::new(
            value.span(),
            "expected `on_lock_error = \"panic\"` (panic when the lock is not taken, whatever \
             the function returns) or `on_lock_error = \"return\"` (return `Err(e.into())`)",
        )),
    }
}

fn duration_arg(value: Expr) -> syn::Result<DurationArg> {
    match literal(&value) {
        None => Ok(DurationArg::Expr(value)),
        Some(Lit::Str(s)) => {
            let duration = lockutils_duration::parse_duration(&s.value()).map_err(|why| {
                syn::Error::new(s.span(), format!("invalid duration {:?}: {why}", s.value()))
            })?;
            Ok(DurationArg::Literal {
                secs: duration.as_secs(),
                nanos: duration.subsec_nanos(),
                span: s.span(),
            })
        }
        Some(other) => Err(syn::Error::new(
            other.span(),
            "expected a duration: a string such as \"250ms\", \"5s\" or \"1m30s\", \
             or a `std::time::Duration` expression",
        )),
    }
}

/// `synchronized_with_prefix!(macro_name, "prefix")`, with the attributes (docs,
/// `#[macro_export]`) of the macro it makes.
pub(crate) struct WithPrefix {
    pub attrs: Vec<Attribute>,
    pub name: Ident,
    pub prefix: LitStr,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("extrenal", "external"), 2);
        let e = unknown_option(&Ident::new("timout", Span::call_site()));
        assert!(e.to_string().contains("did you mean `timeout`?"), "{e}");
        let e = unknown_option(&Ident::new("zzz", Span::call_site()));
        assert!(e.to_string().contains("the options are external"), "{e}");
    }
}
