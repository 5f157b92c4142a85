//! `strata lr-find` (next commit).
