//! `strata diagnose` (next commit).
