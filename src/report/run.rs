//! The page of a training run: curves, test results with the confusion matrix, test
//! images with their predictions (the most confident mistakes among them), the
//! diagnosis, the watch records, the configuration and the environment.

use super::{escape, png_img, read, table, words, Page};
use crate::data::{self, ImageDataset, Split};
use crate::error::{Error, Result};
use crate::method::{diagnose, Thresholds};
use crate::nn::{Layer, Mode};
use crate::plot::{self, Chart, Series};
use crate::train::{self, History, Record, RunPaths};
use std::path::Path;

/// Test images shown with their predictions, and mistakes among the predicted ones.
const GRID: usize = 24;
const MISTAKES: usize = 12;
/// Test images predicted to find the mistakes.
const PREDICTED: usize = 2000;

/// The page of the run in `dir`.
pub fn run_page(dir: &Path) -> Page {
    let name = dir
        .file_name()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let mut page = Page::new(&format!("Run {name}"));
    let paths = RunPaths::new(dir);
    let metrics: Option<serde_json::Value> = match read(dir, "metrics.json") {
        Ok(t) => serde_json::from_str(&t).ok(),
        Err(_) => {
            page.missing("metrics.json (test results: the run did not finish, or was interrupted)");
            None
        }
    };
    let history = match History::read(&paths.history()) {
        Ok(h) if !h.is_empty() => Some(h),
        Ok(_) => {
            page.missing("history.jsonl is empty (curves)");
            None
        }
        Err(e) => {
            page.missing(format!("history.jsonl (curves): {e}"));
            None
        }
    };
    let config = read(dir, "config.toml").ok();
    page.summary = summary(&metrics, &history, config.as_deref());
    if let Some(h) = &history {
        page.try_section("Curves", curves(h));
    }
    if let Some(m) = &metrics {
        page.try_section("Test results", test_results(m));
    }
    match predictions(dir) {
        Ok(body) => page.section("Test images and predictions", body),
        Err(e) => page.missing(format!("test images and predictions: {e}")),
    }
    if history.is_some() {
        page.try_section(
            "Diagnosis",
            diagnose::diagnose(dir, &Thresholds::default()).map(|d| diagnosis(&d)),
        );
    }
    if paths.watch().is_file() {
        page.try_section("Layers during training (watch.jsonl)", watch(&paths));
    }
    match &config {
        Some(c) => page.section("Configuration", format!("<pre>{}</pre>", escape(c))),
        None => page.missing("config.toml (configuration)"),
    }
    page.section("Environment", environment(&metrics));
    page
}

fn summary(m: &Option<serde_json::Value>, h: &Option<Vec<Record>>, config: Option<&str>) -> String {
    let mut parts = vec![];
    if let Some(c) = config.and_then(|c| toml::from_str::<train::TrainConfig>(c).ok()) {
        parts.push(format!(
            "<b>{}</b> on <b>{}</b>",
            escape(&c.model),
            escape(&c.data)
        ));
    }
    if let Some(acc) = m.as_ref().and_then(|m| m["test"]["accuracy"].as_f64()) {
        parts.push(format!("test accuracy <b>{:.2}%</b>", 100.0 * acc));
    }
    if let Some(t) = m.as_ref().map(|m| &m["test_tta"]) {
        if let (Some(acc), Some(v)) = (t["accuracy"].as_f64(), t["views"].as_str()) {
            parts.push(format!(
                "with --tta {}: <b>{:.2}%</b>",
                escape(v),
                100.0 * acc
            ));
        }
    }
    if let Some(b) = m.as_ref().and_then(|m| m["best_val"].as_f64()) {
        parts.push(format!("best validation {b:.4}"));
    }
    if let Some(last) = h
        .as_ref()
        .and_then(|h| h.iter().rev().find(|r| r.kind == "epoch"))
    {
        parts.push(format!("{} epochs, {:.0} s", last.epoch, last.time_s));
    }
    parts.join(" · ")
}

/// The curves of a history: loss, accuracy, learning rate, speed.
pub fn curves(h: &[Record]) -> Result<String> {
    let epochs: Vec<&Record> = h.iter().filter(|r| r.kind == "epoch").collect();
    let pts = |f: &dyn Fn(&Record) -> Option<f64>| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .filter_map(|r| f(r).map(|y| (r.epoch as f64, y)))
            .collect()
    };
    let series = |label: &str, points: Vec<(f64, f64)>| Series {
        label: label.into(),
        points,
    };
    let chart = |title| Chart {
        title,
        x_label: "epoch",
        y_label: "",
        log_x: false,
    };
    let size = (560, 360);
    let mut s = String::from("<div class=\"row\">");
    if epochs.is_empty() {
        return Err(Error::state("report", "no epoch records in history.jsonl"));
    }
    let mut loss = vec![series("training", pts(&|r| Some(r.train_loss)))];
    let val_loss = pts(&|r| r.val_loss);
    if !val_loss.is_empty() {
        loss.push(series("validation", val_loss));
    }
    s.push_str(&plot::line_chart_svg(&chart("loss"), &loss, size)?);
    let mut acc = vec![series("training", pts(&|r| Some(100.0 * r.train_acc)))];
    let val_acc = pts(&|r| r.val_acc.map(|a| 100.0 * a));
    if !val_acc.is_empty() {
        acc.push(series("validation", val_acc));
    }
    s.push_str(&plot::line_chart_svg(&chart("accuracy (%)"), &acc, size)?);
    let lr: Vec<(f64, f64)> = h.iter().map(|r| (r.step as f64, f64::from(r.lr))).collect();
    s.push_str(&plot::line_chart_svg(
        &Chart {
            title: "learning rate",
            x_label: "step",
            y_label: "",
            log_x: false,
        },
        &[series("lr", lr)],
        size,
    )?);
    s.push_str(&plot::line_chart_svg(
        &chart("training images/s"),
        &[series("images/s", pts(&|r| Some(r.images_per_s)))],
        size,
    )?);
    s.push_str("</div>");
    Ok(s)
}

fn test_results(m: &serde_json::Value) -> Result<String> {
    let t = &m["test"];
    if t.is_null() {
        return Err(Error::state(
            "report",
            "metrics.json has no test results (no test split)",
        ));
    }
    let names: Vec<String> = m["classes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default();
    // Row-major [true, predicted] counts, as metrics.json writes them.
    let flat: Vec<u64> = serde_json::from_value(t["confusion"].clone())
        .map_err(|e| Error::state("report", format!("bad confusion matrix: {e}")))?;
    let k = (flat.len() as f64).sqrt().round() as usize;
    if k == 0 || k * k != flat.len() {
        return Err(Error::state(
            "report",
            format!(
                "the confusion matrix has {} entries, not a square",
                flat.len()
            ),
        ));
    }
    let counts: Vec<Vec<u64>> = flat.chunks(k).map(<[u64]>::to_vec).collect();
    let per_class: Vec<Option<f64>> =
        serde_json::from_value(t["per_class"].clone()).unwrap_or_default();
    let mut s = format!(
        "<p>accuracy <b>{:.2}%</b>, loss {:.4}, {} images</p><div class=\"row\">",
        100.0 * t["accuracy"].as_f64().unwrap_or(0.0),
        t["loss"].as_f64().unwrap_or(f64::NAN),
        counts.iter().flatten().sum::<u64>()
    );
    s.push_str(&plot::confusion_svg(&counts, &names)?);
    let rows: Vec<Vec<String>> = per_class
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                format!("{i} {}", escape(names.get(i).map_or("", String::as_str))),
                a.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                counts
                    .get(i)
                    .map_or(0, |r| r.iter().sum::<u64>())
                    .to_string(),
            ]
        })
        .collect();
    s.push_str(&table(&["class", "accuracy", "images"], &rows));
    s.push_str("</div>");
    Ok(s)
}

/// PNG bytes of image `i` of `set`, scaled up `zoom` times (nearest neighbour).
fn png_of(set: &ImageDataset, i: usize, zoom: u32) -> Result<Vec<u8>> {
    let [c, h, w] = set.shape();
    let px = set.image(i);
    let (h, w) = (h as u32, w as u32);
    let plane = (h * w) as usize;
    let im = if c == 1 {
        image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
            image::Luma([px[(y * w + x) as usize]])
        }))
    } else {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            let k = (y * w + x) as usize;
            image::Rgb([px[k], px[plane + k], px[(2 * plane + k).min(px.len() - 1)]])
        }))
    };
    let im = im.resize(w * zoom, h * zoom, image::imageops::FilterType::Nearest);
    let mut out = std::io::Cursor::new(Vec::new());
    im.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| Error::state("report", format!("cannot encode a PNG: {e}")))?;
    Ok(out.into_inner())
}

/// The best model on the first test images: a grid, then the most confident mistakes.
fn predictions(dir: &Path) -> Result<String> {
    let mut t = train::load_trained(dir)?;
    let name = t
        .data
        .clone()
        .ok_or_else(|| Error::state("report", "the checkpoint does not name its data"))?;
    let mut set = data::load(&name, Split::Test)?;
    if let Some(c) = &t.classes {
        set = set.classes_subset(c)?;
    }
    let shape = set.shape();
    if shape != t.model.input_shape() {
        return Err(Error::state(
            "report",
            format!(
                "the test images are {shape:?}, the model takes {:?}",
                t.model.input_shape()
            ),
        ));
    }
    // The first test images, in order, through the loader (the training pipeline's
    // preprocessing, no augmentation).
    let n = set.len().min(PREDICTED);
    let first: Vec<usize> = (0..n).collect();
    let set = set.subset(&first)?;
    let w = set.shape()[2];
    let loader = data::Loader::new(
        std::sync::Arc::new(set.clone()),
        data::LoaderConfig::in_order(200, t.normalize.clone()),
    )?;
    let mut guesses = Vec::with_capacity(n);
    for b in 0..loader.len() {
        let batch = loader.batch(0, b);
        let logits = t.model.forward(&batch.x, Mode::Eval)?;
        let k = logits.shape()[1];
        for (row, &i) in logits.data().chunks(k).zip(&batch.indices) {
            let p = crate::predict::softmax(row);
            let best = train::metrics::argmax(&p);
            guesses.push((i, best, p[best]));
        }
    }
    let zoom = (96 / w.max(1) as u32).clamp(1, 4);
    let figure = |(i, pred, p): (usize, usize, f32)| -> Result<String> {
        let truth = set.label(i) as usize;
        let cls = |k: usize| {
            t.class_names
                .get(k)
                .cloned()
                .unwrap_or_else(|| k.to_string())
        };
        Ok(format!(
            "<figure>{}<figcaption class=\"{}\">{} {:.0}%<br>true: {}</figcaption></figure>",
            png_img(&png_of(&set, i, zoom)?, &format!("test image {i}"), 84),
            if pred == truth { "ok" } else { "wrong" },
            escape(&cls(pred)),
            100.0 * p,
            escape(&cls(truth)),
        ))
    };
    let mut s = format!(
        "<p>The first {GRID} test images, the best model's guess and its probability \
         (green: right, red: wrong).</p><div class=\"grid\">"
    );
    for g in guesses.iter().take(GRID) {
        s.push_str(&figure(*g)?);
    }
    let mut wrong: Vec<(usize, usize, f32)> = guesses
        .iter()
        .copied()
        .filter(|&(i, pred, _)| set.label(i) as usize != pred)
        .collect();
    wrong.sort_by(|a, b| b.2.total_cmp(&a.2));
    s.push_str(&format!(
        "</div><p>The most confident mistakes among the first {n} test images ({} wrong):</p>\
         <div class=\"grid\">",
        wrong.len()
    ));
    for g in wrong.into_iter().take(MISTAKES) {
        s.push_str(&figure(g)?);
    }
    s.push_str("</div>");
    Ok(s)
}

fn diagnosis(d: &diagnose::Diagnosis) -> String {
    let mut s = match (&d.verdict, &d.no_verdict) {
        (Some(v), _) => format!(
            "<p>Verdict: <b>{}</b></p>",
            escape(&words(&format!("{v:?}")))
        ),
        (None, Some(why)) => format!("<p>No verdict: {}</p>", escape(why)),
        (None, None) => "<p>No verdict.</p>".into(),
    };
    for f in &d.findings {
        let list = |v: &[String]| {
            v.iter()
                .map(|x| format!("<li>{}</li>", escape(x)))
                .collect::<String>()
        };
        s.push_str(&format!(
            "<h3>{}</h3><p>Evidence:</p><ul>{}</ul><p>What helps:</p><ul>{}</ul>",
            escape(&words(&format!("{:?}", f.case))),
            list(&f.evidence),
            list(&f.remedies)
        ));
        if !f.non_remedies.is_empty() {
            s.push_str(&format!(
                "<p>What does not:</p><ul>{}</ul>",
                list(&f.non_remedies)
            ));
        }
    }
    s
}

fn watch(paths: &RunPaths) -> Result<String> {
    let recs = train::watch::read(&paths.watch())?;
    let last = recs
        .last()
        .ok_or_else(|| Error::state("report", "watch.jsonl has no records"))?;
    let acts: Vec<Vec<String>> = last
        .acts
        .iter()
        .map(|a| {
            vec![
                escape(&a.name),
                format!("{:?}", a.unit),
                format!("{:.3}", a.mean),
                format!("{:.3}", a.std),
                format!("{:.1}%", 100.0 * a.zero),
                format!("{:.1}%", 100.0 * a.dead),
                format!("{:.1}%", 100.0 * a.saturated),
            ]
        })
        .collect();
    let params: Vec<Vec<String>> = last
        .params
        .iter()
        .map(|p| {
            vec![
                escape(&p.name),
                format!("{:.3}", p.weight_norm),
                format!("{:.3e}", p.grad_norm),
                p.update_ratio.map_or("-".into(), |u| format!("{u:.2e}")),
            ]
        })
        .collect();
    Ok(format!(
        "<p>{} records; the last, at step {} (epoch {}, lr {:.2e}):</p>{}{}",
        recs.len(),
        last.step,
        last.epoch,
        last.lr,
        table(
            &[
                "layer",
                "unit",
                "mean",
                "std",
                "zeros",
                "dead channels",
                "saturated"
            ],
            &acts
        ),
        table(&["weight", "‖W‖", "‖∂L/∂W‖", "update ratio"], &params)
    ))
}

fn environment(m: &Option<serde_json::Value>) -> String {
    let recorded = m
        .as_ref()
        .and_then(|m| m["environment"].as_object().cloned());
    let (rows, note) = match recorded {
        Some(env) => (
            env.iter()
                .map(|(k, v)| vec![escape(k), escape(v.as_str().unwrap_or(&v.to_string()))])
                .collect::<Vec<_>>(),
            "where the run was trained (metrics.json)",
        ),
        None => (
            train::environment()
                .into_iter()
                .map(|(k, v)| vec![escape(&k), escape(&v)])
                .collect(),
            "of the machine that wrote this page (the run recorded none)",
        ),
    };
    format!("<p>{note}</p>{}", table(&["", ""], &rows))
}
