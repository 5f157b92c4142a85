//! Bad calls give errors that name the layer, the expected and the actual shape.

use rand::SeedableRng;
use strata::nn::spec::LayerSpec;
use strata::nn::{Conv2d, Conv2dConfig, Layer, Linear, Mode};
use strata::Tensor;

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(0)
}

fn err_of(layer: &mut dyn Layer, shape: &[usize]) -> String {
    match layer.forward(&Tensor::zeros(shape), Mode::Train) {
        Ok(y) => panic!(
            "{} accepted {shape:?} and gave {:?}",
            layer.kind(),
            y.shape()
        ),
        Err(e) => e.to_string(),
    }
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error `{msg}` does not mention `{p}`");
    }
}

#[test]
fn conv_rejects_wrong_rank_channels_and_too_small_inputs() {
    let mut conv = Conv2d::new(Conv2dConfig::new(3, 8, 5).padding(1), &mut rng()).unwrap();
    assert_names(
        &err_of(&mut conv, &[3, 32, 32]),
        &["Conv2d", "[N, 3, H, W]", "[3, 32, 32]"],
    );
    assert_names(
        &err_of(&mut conv, &[2, 4, 32, 32]),
        &["Conv2d", "[N, 3, H, W]", "[2, 4, 32, 32]"],
    );
    assert_names(
        &err_of(&mut conv, &[2, 3, 2, 8]),
        &["Conv2d", "5x5", "[3, 2, 8]"],
    );
    assert!(Conv2d::new(Conv2dConfig::new(3, 8, 3).groups(2), &mut rng()).is_err());
    assert!(Conv2d::new(Conv2dConfig::new(3, 8, 0), &mut rng()).is_err());
    assert!(Conv2d::new(Conv2dConfig::new(3, 8, 3).stride(0), &mut rng()).is_err());
}

#[test]
fn every_layer_rejects_a_wrong_rank_without_panicking() {
    let specs = [
        r#"{"layer":"max_pool2d","kernel":[2,2]}"#,
        r#"{"layer":"avg_pool2d","kernel":[2,2]}"#,
        r#"{"layer":"adaptive_avg_pool2d","output":[1,1]}"#,
        r#"{"layer":"batch_norm2d","num_features":3}"#,
        r#"{"layer":"group_norm","num_groups":1,"num_channels":3}"#,
        r#"{"layer":"per_channel_layer_norm","num_channels":3}"#,
        r#"{"layer":"instance_norm2d","num_features":3}"#,
        r#"{"layer":"channel_layer_norm","num_channels":3}"#,
        r#"{"layer":"dropout2d","p":0.5}"#,
        r#"{"layer":"linear","in_features":3,"out_features":2}"#,
        r#"{"layer":"flatten"}"#,
    ];
    for s in specs {
        let spec: LayerSpec = serde_json::from_str(s).unwrap();
        let mut layer = spec.build(&mut rng()).unwrap();
        let shape: &[usize] = if s.contains("linear") {
            &[2, 3, 1, 1]
        } else {
            &[3]
        };
        let msg = err_of(layer.as_mut(), shape);
        assert!(
            msg.contains(&format!("{shape:?}")),
            "{s}: `{msg}` does not show the shape"
        );
        assert!(
            msg.contains(layer.kind()),
            "{s}: `{msg}` does not name {}",
            layer.kind()
        );
        // output_shape agrees with forward
        assert!(layer.output_shape(shape).is_err(), "{s}");
    }
}

#[test]
fn pooling_window_larger_than_input_is_an_error() {
    let spec: LayerSpec = serde_json::from_str(r#"{"layer":"max_pool2d","kernel":[3,3]}"#).unwrap();
    let mut pool = spec.build(&mut rng()).unwrap();
    assert_names(
        &err_of(pool.as_mut(), &[1, 1, 2, 2]),
        &["MaxPool2d", "[2, 2]"],
    );
}

#[test]
fn backward_without_forward_or_with_a_wrong_dy_is_an_error() {
    let mut lin = Linear::new(4, 2, true, &mut rng()).unwrap();
    let msg = lin
        .backward(&Tensor::zeros(&[1, 2]))
        .unwrap_err()
        .to_string();
    assert_names(&msg, &["Linear", "forward"]);
    lin.forward(&Tensor::zeros(&[3, 4]), Mode::Eval).unwrap();
    assert!(
        lin.backward(&Tensor::zeros(&[3, 2])).is_err(),
        "eval forward keeps no cache"
    );
    lin.forward(&Tensor::zeros(&[3, 4]), Mode::Train).unwrap();
    assert_names(
        &lin.backward(&Tensor::zeros(&[3, 5]))
            .unwrap_err()
            .to_string(),
        &["Linear", "[3, 2]", "[3, 5]"],
    );
}

#[test]
fn cross_entropy_rejects_out_of_range_targets() {
    let ce = strata::loss::CrossEntropy::default();
    let msg = ce
        .forward(&Tensor::zeros(&[2, 3]), &[0, 3])
        .unwrap_err()
        .to_string();
    assert_names(&msg, &["class 3", "3 classes"]);
    assert!(ce.forward(&Tensor::zeros(&[2, 3]), &[0]).is_err());
    assert!(strata::loss::CrossEntropy::with_label_smoothing(1.0).is_err());
}
