//! Misuse of `#[synchronized]` is a compile error spanned at the mistake. The expected
//! messages are pinned in `tests/ui/*.stderr` (regenerate with `TRYBUILD=overwrite`).
//! Correct use compiles without a warning in the user's crate: `tests/ui/pass/*.rs` deny them.

#[test]
fn compile_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}

#[test]
fn no_warnings() {
    trybuild::TestCases::new().pass("tests/ui/pass/*.rs");
}
