//! Durations as the configuration and `#[synchronized]` write them: `"250ms"`, `"5s"`,
//! `"1m30s"`; the parser is the `lockutils-duration` crate's, shared with the attribute.

pub use lockutils_duration::parse_duration;
