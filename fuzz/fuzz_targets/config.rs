//! Fuzzes the run configuration: any text read as a `--config` TOML file, then
//! validated, its augmentation resolved and parsed — everything `strata train` does
//! with a config before the first step. Must return `Ok` or a named error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::data::Augment;
use strata::train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The augmentation syntax alone (a flag as well as a config field).
    let _ = Augment::parse(text);
    if let Ok(config) = toml::from_str::<TrainConfig>(text) {
        if config.validate().is_ok() {
            let _ = Augment::parse(&config.resolved_augment());
            let _ = config.to_toml();
        }
    }
});
