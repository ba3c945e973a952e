//! Procedural macros for [wharf](https://docs.rs/wharf).
//!
//! This crate is an implementation detail of `wharf`, which re-exports what it
//! defines; depend on `wharf` instead. The `#[wharf::on("...")]` handler
//! attributes land here with the declarative-API issue. Until then the crate
//! holds no macros, so that the workspace layout and the re-export path exist
//! from the start and no user code depends on anything half-built.
