//! Integration tests of the engine, in one binary: PyTorch parity on committed
//! fixtures, finite-difference gradient checks, and errors on bad calls.

mod bad_input;
mod bench;
mod determinism;
mod errors;
mod fixtures;
mod gradcheck;
mod method;
mod models;
mod parity;
mod plans;
mod report;
mod study;
mod train;
mod trainer;
mod transfer;
mod tune;

/// The embedded Fashion-MNIST subset (`data/embedded`), as a `--data` argument.
fn embedded() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("embedded")
        .display()
        .to_string()
}
