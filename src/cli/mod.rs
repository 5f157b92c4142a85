//! Command-line subcommands of the `strata` binary (the library does the work).

pub mod bench;
pub mod data;
pub mod models;
pub mod train;
