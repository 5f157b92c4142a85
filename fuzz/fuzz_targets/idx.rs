//! Fuzzes the IDX reader (raw and gzip) and the image/label pairing.
//!
//! Input: any bytes. The first byte picks a split point; the two halves are decoded as
//! an image file and a label file. Decoding must return `Ok` or `Err`, never panic,
//! and never allocate more than the input can describe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata::data::idx;

fuzz_target!(|data: &[u8]| {
    let (ip, lp) = (Path::new("images.idx"), Path::new("labels.idx"));
    let _ = idx::decode(data, ip);
    if let Some((&split, rest)) = data.split_first() {
        let at = (split as usize * rest.len()) / 256;
        let (a, b) = rest.split_at(at);
        if let (Ok(images), Ok(labels)) = (idx::decode(a, ip), idx::decode(b, lp)) {
            let names = (0..10).map(|i| i.to_string()).collect();
            if let Ok(d) = idx::to_dataset(images, ip, labels, lp, names) {
                assert_eq!(d.images().len(), d.len() * d.image_len());
                assert!(d.labels().iter().all(|&l| l < 10));
            }
        }
    }
});
