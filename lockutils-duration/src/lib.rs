//! Durations as lockutils users write them: `"250ms"`, `"5s"`, `"1m30s"`. One parser for the
//! runtime (configuration, the command line) and for the `#[synchronized]` attribute, which
//! checks its literals at compile time with it: so the attribute's crate needs this, not the
//! whole runtime. Depend on `lockutils`, which re-exports [`parse_duration`].

#![warn(missing_docs)]

use std::time::Duration;

/// Parses a duration as users write it: `"250ms"`, `"1.5s"`, `"1m30s"`... (numbers with units
/// ns, us or µs, ms, s, m, h). What `#[synchronized(timeout = "...")]` and the command line
/// accept.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(lockutils_duration::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(lockutils_duration::parse_duration("5").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("ms").is_err());
        assert_eq!(
            parse_duration("5 parsecs"),
            Err("unknown unit \"parsecs\" (use ns, us, ms, s, m or h)".to_owned())
        );
    }
}
