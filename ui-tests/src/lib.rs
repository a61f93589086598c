//! Hosts only the trybuild tests of `#[jobq::job]` (see `tests/ui.rs`); it exports nothing.
