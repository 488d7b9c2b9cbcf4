//! Misuse of `#[synchronized]` is a compile error spanned at the mistake. The expected
//! messages are pinned in `tests/ui/*.stderr` (regenerate with `TRYBUILD=overwrite`).

#[test]
fn compile_errors() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
