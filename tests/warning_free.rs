//! The `tests/ui/pass` cases as one test crate, so that `cargo clippy --all-targets` lints
//! what `#[synchronized]` generates in each form (trybuild builds them with rustc only).

// Not reformatted: one-line bodies are the point (`unused_braces` fires only on those).
#[rustfmt::skip]
#[path = "ui/pass/all_forms.rs"]
mod all_forms;
#[rustfmt::skip]
#[path = "ui/pass/return_types.rs"]
mod return_types;

#[test]
fn all_forms() {
    all_forms::main();
}

#[test]
fn return_types() {
    return_types::main();
}
