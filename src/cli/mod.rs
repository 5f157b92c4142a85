//! Command-line subcommands of the `strata` binary (the library does the work).

pub mod bench;
pub mod data;
pub mod method;
pub mod models;
pub mod recipe;
pub mod report;
pub mod study;
pub mod train;
pub mod transfer;
pub mod tune;

use strata::kernels::bf16::{self, Precision};

/// Says so on stderr when bf16 is asked for on a CPU that cannot do it (everything then
/// runs in f32, as the flag's help says).
pub fn warn_without_bf16(p: Precision) {
    if p == Precision::Bf16 && !bf16::available() {
        eprintln!(
            "warning: --precision bf16 needs AVX-512 BF16, which this CPU lacks; running in f32"
        );
    }
}
