//! Fuzzes the search-space reader of `strata tune`: any text parsed as a search space
//! file (the TOML tables, the distribution grammar `log_uniform(a, b)`, `choice([...])`,
//! every trial configuration checked), then the plan of its trials (capped). Must return
//! a space or a named error, never panic. (A drawn combination may still be invalid —
//! a warm-up longer than a drawn epoch count — and is then a failed trial: the config
//! check must say so, not panic.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::tune::{plan, SearchSpace};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = strata::tune::Dist::parse("field", text);
    if let Ok(mut space) = SearchSpace::parse(text) {
        // Keep the plan small: the fuzzer looks for panics, not for big grids.
        space.settings.trials = space.settings.trials.min(8);
        space.settings.grid_points = space.settings.grid_points.min(3);
        if space.params.len() <= 4 {
            for values in plan::trials(&space).iter().take(8) {
                let _ = space.config(values);
            }
        }
    }
});
