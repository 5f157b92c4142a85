//! Fuzzes one image-folder entry: decoding a file's bytes (PNG/JPEG, whatever the
//! `image` crate recognises), then what the folder loader does with a decoded image —
//! resize to a size taken from the input, and split into gray or RGB planes.
//!
//! Input: any bytes. The first two bytes pick the size (1–32 × 1–32) and the colour
//! mode; the rest is the file. Must return an image or an error, never panic, and the
//! planes must have exactly channels × h × w bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::data::folder;

fuzz_target!(|data: &[u8]| {
    let Some((&[a, b], file)) = data.split_first_chunk::<2>().map(|(h, r)| (h, r)) else {
        return;
    };
    let h = 1 + (a as usize % 32);
    let w = 1 + (b as usize % 32);
    let gray = a & 0x80 != 0;
    if let Ok(im) = folder::decode_bytes(file) {
        // Skip the resize of huge (but valid) images: it is the image crate's cost, not
        // a parser bug, and would only slow the fuzzer down.
        if u64::from(im.width()) * u64::from(im.height()) > 1 << 22 {
            return;
        }
        let im = folder::fit(im, [h, w]);
        let planes = folder::planes(&im, gray);
        assert_eq!(planes.len(), if gray { 1 } else { 3 } * h * w);
    }
});
