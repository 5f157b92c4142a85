//! Fuzzes the checkpoint reader: any bytes loaded as a safetensors checkpoint into a
//! small model, strictly and not, and read as a plain tensor file (what resume does
//! with optimizer state). Must return `Ok` or a named error, never panic; a strict load
//! that fails must leave the model unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use strata::checkpoint;
use strata::models::{self, ModelConfig};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    let _ = checkpoint::tensors_from_bytes(data, path);
    let config = ModelConfig {
        width: 0.25,
        in_channels: 1,
        input_size: [28, 28],
        ..ModelConfig::cifar()
    };
    let Ok(mut model) = models::build("fmnist-cnn", Some(config)) else {
        return;
    };
    let before = checkpoint::state_dict(&mut model.net);
    if checkpoint::load_bytes(&mut model.net, data, path, true).is_err() {
        let after = checkpoint::state_dict(&mut model.net);
        assert!(before == after, "a failed strict load changed the model");
    }
    let _ = checkpoint::load_bytes(&mut model.net, data, path, false);
});
