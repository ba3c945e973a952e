//! Compile-time behaviour of `#[wharf::on]` and `wharf::handlers![...]`:
//! every user mistake is a compile error at the offending token
//! (`ui/fail/*.rs` with their expected `.stderr`), and every supported shape
//! compiles in a crate outside this workspace (`ui/pass/*.rs`, built by
//! trybuild as its own package depending on `wharf` by path, and run).
//!
//! After changing a message, regenerate with
//! `TRYBUILD=overwrite cargo test -p wharf-macros --test ui` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
