//! The shared part of adt-xen-image: its command line, in the library so
//! that man pages and shell completions are generated from the same
//! definition the binary parses (as `adt_privd::cli::Args`).
//!
//! Not for: building anything; the steps live in the binary's modules.

pub mod cli;
