//! Integration tests of the engine, in one binary: PyTorch parity on committed
//! fixtures, finite-difference gradient checks, and errors on bad calls.

mod bench;
mod errors;
mod fixtures;
mod gradcheck;
mod models;
mod parity;
mod plans;
mod train;
mod trainer;
