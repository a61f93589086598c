//! Compile-time tests of `#[jobq::job]`: every supported shape compiles, and
//! every misuse fails with the message recorded in its `.stderr` file.

/// Runs `tests/ui/pass/*.rs` (must compile and run) and `tests/ui/fail/*.rs`
/// (must fail to compile with the recorded `.stderr`).
#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
