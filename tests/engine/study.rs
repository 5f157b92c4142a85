//! The studies at tiny scale: they run end to end, and the effects the lecture describes
//! show where they are strong even at this scale.

use std::path::Path;
use strata::study::init::{init_study, InitOptions};

#[test]
fn the_init_study_shows_collapse_saturation_and_kaiming_holding_the_spread() {
    let out = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        data: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/embedded")
            .display()
            .to_string(),
        batch: 16,
        // Full width: with 4 channels a layer has too few weights for the variance a
        // scheme sets to be the variance it gets.
        width: 1.0,
        out: Some(out.path().to_path_buf()),
        ..InitOptions::default()
    };
    let r = init_study(&opts).unwrap();
    assert_eq!(r.cases.len(), 16);
    let holds = |start: &str| {
        let c = r
            .claims
            .iter()
            .find(|c| c.claim.starts_with(start))
            .unwrap_or_else(|| panic!("no claim {start}"));
        assert!(c.holds, "{}: {}", c.claim, c.evidence);
    };
    holds("tanh under N(0, 0.01²)");
    holds("tanh under N(0, 1)");
    holds("ReLU under Kaiming");
    holds("with BatchNorm");
    // The collapse, layer by layer: every tanh layer's spread below the one before.
    let small = r
        .cases
        .iter()
        .find(|c| c.activation == "tanh" && c.init == "normal:0.01" && c.norm == "none")
        .unwrap();
    assert!(
        small.layers.windows(2).all(|p| p[1].std < p[0].std),
        "{:?}",
        small.layers
    );
    for f in ["init.svg", "results.json", "claims.txt"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    // Bad input: a batch of one image.
    let bad = InitOptions { batch: 1, ..opts };
    assert!(init_study(&bad).is_err());
}
