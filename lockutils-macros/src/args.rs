//! Parsing of `#[synchronized(...)]` arguments. Nothing here generates code.

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

/// The options, in the order the docs list them.
const OPTIONS: &[&str] = &[
    "external",
    "prefix",
    "lock_file_prefix",
    "lock_path",
    "semaphores",
    "fair",
    "blocking",
    "timeout",
    "delay",
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

/// Parsed `#[synchronized(...)]` arguments.
pub(crate) struct Args {
    pub name: Name,
    pub external: Option<Expr>,
    /// The key as written (`prefix` or `lock_file_prefix`) and the value.
    pub prefix: Option<(Ident, Expr)>,
    pub lock_path: Option<Expr>,
    pub semaphores: Option<Expr>,
    pub fair: Option<Expr>,
    pub blocking: Option<(Ident, Expr)>,
    pub timeout: Option<(Ident, DurationArg)>,
    pub delay: Option<DurationArg>,
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
        options.finish(name)
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

#[derive(Default)]
struct Options {
    first: Option<Ident>,
    external: Option<Expr>,
    prefix: Option<(Ident, Expr)>,
    lock_path: Option<Expr>,
    semaphores: Option<Expr>,
    fair: Option<Expr>,
    blocking: Option<(Ident, Expr)>,
    timeout: Option<(Ident, DurationArg)>,
    delay: Option<DurationArg>,
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
            "blocking" => put(&mut self.blocking, (key.clone(), bool_arg(value)?)),
            "timeout" => put(&mut self.timeout, (key.clone(), duration_arg(value)?)),
            "delay" => put(&mut self.delay, duration_arg(value)?),
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

    fn finish(self, name: Name) -> syn::Result<Args> {
        Ok(Args {
            name,
            external: self.external,
            prefix: self.prefix,
            lock_path: self.lock_path,
            semaphores: self.semaphores,
            fair: self.fair,
            blocking: self.blocking,
            timeout: self.timeout,
            delay: self.delay,
        })
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

fn duration_arg(value: Expr) -> syn::Result<DurationArg> {
    match literal(&value) {
        None => Ok(DurationArg::Expr(value)),
        Some(Lit::Str(s)) => {
            let (secs, nanos) = parse_duration(&s.value()).map_err(|why| {
                syn::Error::new(s.span(), format!("invalid duration {:?}: {why}", s.value()))
            })?;
            Ok(DurationArg::Literal {
                secs,
                nanos,
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

/// Parses `"250ms"`, `"1.5s"`, `"1m30s"`...: numbers with units ns, us (µs), ms, s, m, h.
pub(crate) fn parse_duration(text: &str) -> Result<(u64, u32), String> {
    let mut total: u128 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("it is empty".into());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number needs a unit (ns, us, ms, s, m or h)")?;
        if number_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per: u128 = match unit.trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ));
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = whole
            .parse()
            .map_err(|_| format!("bad number {number:?}"))?;
        let mut nanos = whole * nanos_per;
        let mut scale = nanos_per;
        for digit in fraction.chars() {
            let digit = digit
                .to_digit(10)
                .ok_or_else(|| format!("bad number {number:?}"))?;
            scale /= 10;
            nanos += u128::from(digit) * scale;
        }
        total = total.checked_add(nanos).ok_or("it is too long")?;
        rest = next.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "it is too long")?;
    Ok((secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok((0, 250_000_000)));
        assert_eq!(parse_duration("1.5s"), Ok((1, 500_000_000)));
        assert_eq!(parse_duration("1m30s"), Ok((90, 0)));
        assert_eq!(parse_duration("2h"), Ok((7200, 0)));
        assert_eq!(parse_duration("10us"), Ok((0, 10_000)));
        assert_eq!(parse_duration("7ns"), Ok((0, 7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("extrenal", "external"), 2);
        let e = unknown_option(&Ident::new("timout", Span::call_site()));
        assert!(e.to_string().contains("did you mean `timeout`?"), "{e}");
        let e = unknown_option(&Ident::new("zzz", Span::call_site()));
        assert!(e.to_string().contains("the options are external"), "{e}");
    }
}
