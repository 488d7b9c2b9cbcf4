//! The `[oslo_concurrency]` options of an oslo-style INI file, read as oslo.config reads them.
//!
//! A port of oslo.config's `iniparser.BaseParser` and `cfg.ConfigParser` (the file's syntax)
//! and of what `CONF.oslo_concurrency.<option>` does with the text found (the
//! `OS_OSLO_CONCURRENCY__<OPTION>` environment variable first, `$name` substitution, type
//! conversion), for the options lockutils reads:
//!
//! - Lines end at `\n`, `\r\n` or `\r` (Python's universal newlines); trailing white space is
//!   dropped. A blank line ends a value.
//! - A line starting with a space or a tab continues the value of the previous line (its
//!   leading white space dropped, joined with `\n`), even when it starts with `#`. Anywhere
//!   else it is an error ("unexpected continuation line").
//! - A line starting with `[` is a section header: it must end with `]` and name something;
//!   the name is everything between the brackets, spaces included. Section names match
//!   case-insensitively (`[OSLO_CONCURRENCY]` is `[oslo_concurrency]`); sections of one name
//!   are merged.
//! - A line starting with `#` or `;` is a comment; there are no comments after a value.
//! - Any other line is `key = value` or `key: value` (the first of `=` and `:` splits), key
//!   and value trimmed; a value whose first and last characters are the same quote (`"` or
//!   `'`) loses them, so `"` alone is empty. An empty key, a line with neither separator and a
//!   key before any section are errors.
//! - Keys are case-sensitive; the last assignment of an option wins, and only that one is
//!   interpreted.
//! - Values undergo oslo.config's template substitution: `$$` and `\$` are a literal `$`;
//!   `$name` and `${name}` are the value of option `name` of `[oslo_concurrency]` (only
//!   `lock_path` and `disable_process_locking` are known; a reference to any other option is
//!   an error here, since oslo.config's result depends on the options of the program that
//!   registered it), `${oslo_concurrency.name}` too; a `$` that starts no name stays as it is.
//! - "White space" is Python's: Unicode white space and the separators U+001C..U+001F. A byte
//!   order mark is not white space (oslo.config does not skip it either).

use std::borrow::Cow;

/// The group lockutils reads.
const GROUP: &str = "oslo_concurrency";

/// What one run of the parser found in `[oslo_concurrency]`: the last assignment of each
/// option lockutils reads.
#[derive(Debug, Default)]
pub(crate) struct Assignments {
    pub(crate) lock_path: Option<Assignment>,
    pub(crate) disable_process_locking: Option<Assignment>,
    pub(crate) backend_url: Option<Assignment>,
}

/// The text of an assignment (continuation lines joined with `\n`), and its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) value: String,
    pub(crate) line: usize,
}

/// An error: the 1-based line (0 when it concerns no line of the file) and the cause.
pub(crate) type Failure = (usize, String);

/// Python's `str.isspace()`.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `splitlines` of a file opened in text mode: `\n`, `\r\n` and `\r` end lines.
fn universal_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
            None => Some(std::mem::take(&mut rest)),
            Some(end) => {
                let line = &rest[..end];
                let skip = if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                rest = &rest[end + skip..];
                Some(line)
            }
        }
    })
}

/// oslo.config's `_normalize_group_name`, compared with the group lockutils reads.
fn is_our_group(section: &str) -> bool {
    section != "DEFAULT" && section.to_lowercase() == GROUP
}

struct Pending {
    key: String,
    values: Vec<String>,
    line: usize,
}

/// Parses `text` as `iniparser.BaseParser.parse` and `cfg.ConfigParser` do.
pub(crate) fn parse(text: &str) -> Result<Assignments, Failure> {
    let mut found = Assignments::default();
    // The current section: `Some(true)` when it is `[oslo_concurrency]`.
    let mut section: Option<bool> = None;
    let mut pending: Option<Pending> = None;

    let mut flush = |pending: &mut Option<Pending>, section: Option<bool>| -> Result<(), Failure> {
        let Some(Pending { key, values, line }) = pending.take() else {
            return Ok(());
        };
        let Some(ours) = section else {
            return Err((
                line,
                format!("section must be started before assignment (of {key:?})"),
            ));
        };
        if ours {
            let slot = match key.as_str() {
                "lock_path" => &mut found.lock_path,
                "disable_process_locking" => &mut found.disable_process_locking,
                "backend_url" => &mut found.backend_url,
                _ => return Ok(()),
            };
            *slot = Some(Assignment {
                value: values.join("\n"),
                line,
            });
        }
        Ok(())
    };

    // A line quoted in an error, with any password in it hidden: errors may name lines of
    // other services' sections (a `[database] connection` URL, say).
    let shown = |line: &str| super::redact_url(line);
    for (index, raw) in universal_lines(text).enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches(is_py_space);
        if line.is_empty() {
            // A blank line ends a multi-line value.
            flush(&mut pending, section)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match &mut pending {
                Some(p) => p
                    .values
                    .push(line.trim_start_matches(is_py_space).to_owned()),
                None => {
                    return Err((
                        line_no,
                        format!(
                            "unexpected continuation line {:?} (a line starting with white \
                             space continues the value of the line before; here there is none)",
                            shown(line)
                        ),
                    ));
                }
            }
            continue;
        }
        flush(&mut pending, section)?;
        if line.starts_with('[') {
            if !line.ends_with(']') {
                return Err((
                    line_no,
                    format!("invalid section {:?} (must end with ])", shown(line)),
                ));
            }
            if line.chars().count() <= 2 {
                return Err((line_no, format!("empty section name {:?}", shown(line))));
            }
            section = Some(is_our_group(&line[1..line.len() - 1]));
        } else if line.starts_with(['#', ';']) {
            // A comment.
        } else {
            let (key, value) = split_key_value(line).ok_or_else(|| {
                (
                    line_no,
                    format!("no ':' or '=' found in assignment {:?}", shown(line)),
                )
            })?;
            if key.is_empty() {
                return Err((line_no, format!("key cannot be empty in {:?}", shown(line))));
            }
            pending = Some(Pending {
                key: key.to_owned(),
                values: vec![value.to_owned()],
                line: line_no,
            });
        }
    }
    flush(&mut pending, section)?;
    Ok(found)
}

/// `BaseParser._split_key_value`: the first of `=` and `:` splits; key and value are trimmed
/// and one pair of like quotes around the value is dropped.
fn split_key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.find(['=', ':'])?;
    let key = py_strip(&line[..at]);
    let mut value = py_strip(&line[at + 1..]);
    if let (Some(first), Some(last)) = (value.chars().next(), value.chars().next_back())
        && first == last
        && (first == '"' || first == '\'')
    {
        // One character is both ends: `"` alone becomes empty, as in Python.
        value = if value.len() == 1 {
            ""
        } else {
            &value[1..value.len() - 1]
        };
    }
    Some((key, value))
}

/// oslo's options of the group, which `$name` may refer to.
const OSLO_OPTIONS: [&str; 2] = ["lock_path", "disable_process_locking"];

/// The text of an option, with the line (0 for none) and the name it came from, for
/// messages.
struct Text {
    value: String,
    line: usize,
    origin: String,
}

impl Text {
    fn fail(&self, reason: String) -> Failure {
        (self.line, format!("{}: {reason}", self.origin))
    }
}

/// Looks up what `CONF.oslo_concurrency.<option>` gives, as `ConfigOpts._do_get` does.
pub(crate) struct Resolver<'a> {
    found: &'a Assignments,
    /// Reads an environment variable; `Err` names a variable that is not valid Unicode.
    env: &'a dyn Fn(&str) -> Result<Option<String>, String>,
    /// The default of `lock_path` (the one of `set_defaults`, else `OSLO_LOCK_PATH`) and
    /// where it comes from.
    default_lock_path: Option<(String, String)>,
}

impl<'a> Resolver<'a> {
    /// `default_lock_path` is what `$lock_path` substitutes when neither the environment nor
    /// the file sets `lock_path`, with its origin for messages.
    pub(crate) fn new(
        found: &'a Assignments,
        env: &'a dyn Fn(&str) -> Result<Option<String>, String>,
        default_lock_path: Option<(String, String)>,
    ) -> Self {
        Self {
            found,
            env,
            default_lock_path,
        }
    }

    /// `CONF.oslo_concurrency.lock_path` when the file or the environment sets it: from
    /// `OS_OSLO_CONCURRENCY__LOCK_PATH` in the environment, else the file; `None` when
    /// neither does (the default is applied later, when a lock needs it, so that
    /// `set_defaults` still wins over `OSLO_LOCK_PATH` as in oslo).
    pub(crate) fn lock_path(&self) -> Result<Option<String>, Failure> {
        Ok(self
            .text("lock_path", &mut Vec::new(), false)?
            .map(|t| t.value))
    }

    /// `CONF.oslo_concurrency.disable_process_locking`, found as `lock_path` is; `False` by
    /// default.
    pub(crate) fn disable_process_locking(&self) -> Result<bool, Failure> {
        self.disable_process_locking_inner(&mut Vec::new())
    }

    fn disable_process_locking_inner(&self, stack: &mut Vec<&str>) -> Result<bool, Failure> {
        let Some(text) = self.text("disable_process_locking", stack, false)? else {
            return Ok(false);
        };
        parse_bool(&text.value)
            .ok_or_else(|| text.fail(format!("{:?} is not a boolean", text.value)))
    }

    /// The substituted text of oslo's `option`, and where it came from; `None` when it is set
    /// nowhere (and, with `with_default`, has no default text either).
    fn text(
        &self,
        option: &'static str,
        stack: &mut Vec<&str>,
        with_default: bool,
    ) -> Result<Option<Text>, Failure> {
        let env_name = format!("OS_{}__{}", GROUP.to_uppercase(), option.to_uppercase());
        let found = |value: String, line: usize, origin: String| {
            let text = Text {
                value: String::new(),
                line,
                origin,
            };
            (value, text)
        };
        let (raw, text) = if let Some(v) = (self.env)(&env_name).map_err(|e| (0, e))? {
            found(v, 0, format!("{option} (from {env_name})"))
        } else if let Some(a) = self.assignment(option) {
            found(a.value.clone(), a.line, option.to_owned())
        } else if option == "lock_path"
            && with_default
            && let Some((v, from)) = &self.default_lock_path
        {
            found(v.clone(), 0, format!("{option} (its default, from {from})"))
        } else {
            return Ok(None);
        };
        stack.push(option);
        let value = self
            .substitute(&raw, stack, &|s| s.to_owned())
            .map_err(|e| match e {
                SubstError::Here(reason) => text.fail(reason),
                SubstError::Inner(f) => f,
            })?
            .into_owned();
        stack.pop();
        Ok(Some(Text { value, ..text }))
    }

    fn assignment(&self, option: &str) -> Option<&'a Assignment> {
        match option {
            "lock_path" => self.found.lock_path.as_ref(),
            "disable_process_locking" => self.found.disable_process_locking.as_ref(),
            "backend_url" => self.found.backend_url.as_ref(),
            _ => None,
        }
    }

    /// `backend_url` (lockutils' own option, not oslo's): the file's text, substituted as a
    /// string option of the group would be. `show` hides secrets of `value` in messages.
    pub(crate) fn get_own(
        &self,
        option: &str,
        show: &dyn Fn(&str) -> String,
    ) -> Result<Option<String>, Failure> {
        let Some(a) = self.assignment(option) else {
            return Ok(None);
        };
        self.substitute(&a.value, &mut vec![option], show)
            .map(|v| Some(v.into_owned()))
            .map_err(|e| match e {
                SubstError::Here(reason) => (a.line, format!("{option}: {reason}")),
                SubstError::Inner(f) => f,
            })
    }

    /// `ConfigOpts._substitute`: `\$` is `$$`, then `string.Template.safe_substitute` with
    /// oslo's identifier pattern `[_a-z][\._a-z0-9]*` (case-insensitive, so also the four
    /// non-ASCII letters Python's case folding maps into it).
    fn substitute<'v, 's>(
        &self,
        value: &'v str,
        stack: &mut Vec<&'s str>,
        show: &dyn Fn(&str) -> String,
    ) -> Result<Cow<'v, str>, SubstError> {
        if !value.contains('$') {
            return Ok(Cow::Borrowed(value));
        }
        let escaped = value.replace("\\$", "$$");
        let chars: Vec<char> = escaped.chars().collect();
        let mut out = String::with_capacity(escaped.len());
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let name_at = |start: usize| -> Option<usize> {
                if !chars.get(start).is_some_and(|&c| is_id_start(c)) {
                    return None;
                }
                let mut end = start + 1;
                while chars.get(end).is_some_and(|&c| is_id_continue(c)) {
                    end += 1;
                }
                Some(end)
            };
            let (name, next) = match chars.get(i + 1) {
                Some('$') => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                Some('{') => match name_at(i + 2) {
                    Some(end) if chars.get(end) == Some(&'}') => (&chars[i + 2..end], end + 1),
                    _ => {
                        out.push('$');
                        i += 1;
                        continue;
                    }
                },
                _ => match name_at(i + 1) {
                    Some(end) => (&chars[i + 1..end], end),
                    None => {
                        out.push('$');
                        i += 1;
                        continue;
                    }
                },
            };
            let name: String = name.iter().collect();
            out.push_str(&self.lookup(&name, value, stack, show)?);
            i = next;
        }
        Ok(Cow::Owned(out))
    }

    /// `StrSubWrapper.__getitem__`, for the options lockutils knows.
    fn lookup<'s>(
        &self,
        name: &str,
        value: &str,
        stack: &mut Vec<&'s str>,
        show: &dyn Fn(&str) -> String,
    ) -> Result<String, SubstError> {
        let option = match name.split_once('.') {
            Some((GROUP, option)) => option,
            Some(_) => "",
            None => name,
        };
        let Some(&option) = OSLO_OPTIONS.iter().find(|&&o| o == option) else {
            return Err(SubstError::Here(format!(
                "{:?} uses oslo.config interpolation (${name}), which is not supported here: \
                 only lock_path and disable_process_locking of [oslo_concurrency] can be \
                 referred to, the value of any other option depends on the program that \
                 registers it; write the value out (a literal $ is written $$), or lock files \
                 would go elsewhere than Python's",
                show(value)
            )));
        };
        if stack.contains(&option) {
            return Err(SubstError::Here(format!(
                "{:?} makes a loop of references through ${name} (oslo.config fails on it \
                 with a RecursionError)",
                show(value)
            )));
        }
        let got = match option {
            "lock_path" => self
                .text("lock_path", stack, true)
                .map(|t| t.map(|t| t.value)),
            _ => self
                .disable_process_locking_inner(stack)
                .map(|b| Some(if b { "True" } else { "False" }.to_owned())),
        };
        // `None` substitutes as empty.
        Ok(got.map_err(SubstError::Inner)?.unwrap_or_default())
    }
}

enum SubstError {
    /// About the value being substituted.
    Here(String),
    /// About another option it refers to, already placed.
    Inner(Failure),
}

fn is_id_start(c: char) -> bool {
    c == '_'
        || c.is_ascii_alphabetic()
        || matches!(c, '\u{130}' | '\u{131}' | '\u{17f}' | '\u{212a}')
}

fn is_id_continue(c: char) -> bool {
    is_id_start(c) || c == '.' || c.is_ascii_digit()
}

/// oslo.config's `types.Boolean`.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.to_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}
