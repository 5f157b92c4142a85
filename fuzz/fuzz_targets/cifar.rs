//! Fuzzes the CIFAR-10/100 binary record parser with all three label modes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata::data::cifar::{self, CifarKind, IMAGE_BYTES};

fuzz_target!(|data: &[u8]| {
    for kind in [CifarKind::Ten, CifarKind::HundredFine, CifarKind::HundredCoarse] {
        if let Ok((images, labels)) = cifar::parse(data, Path::new("batch.bin"), kind) {
            assert_eq!(images.len(), labels.len() * IMAGE_BYTES);
            assert_eq!(data.len(), labels.len() * kind.record_bytes());
            assert!(labels.iter().all(|&l| (l as usize) < kind.num_classes()));
        }
    }
});
