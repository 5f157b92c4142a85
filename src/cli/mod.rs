//! The `strata` command-line tool's subcommands (the binary's own modules).

pub mod models;
