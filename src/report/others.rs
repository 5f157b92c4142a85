//! The pages of a search, an LR sweep and a study: their tables and figures, from the
//! files the commands wrote.

use super::{escape, read, table, Page};
use crate::error::{Error, Result};
use crate::method::lr_find::LrFindReport;
use crate::tune::results::{show, TuneReport};
use std::path::Path;

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .map_or("folder".into(), |s| s.to_string_lossy().into_owned())
}

/// Every `.svg` file of `dir` (sorted by name), inline, without an XML declaration.
fn figures(dir: &Path) -> Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "svg"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::state("report", "no figures (.svg) in the folder"));
    }
    let mut s = String::from("<div class=\"row\">");
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        let start = text.find("<svg").ok_or_else(|| Error::Format {
            path: f.clone(),
            reason: "not an SVG file".into(),
        })?;
        s.push_str(&format!(
            "<figure>{}<figcaption>{}</figcaption></figure>",
            &text[start..],
            escape(
                &f.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            )
        ));
    }
    s.push_str("</div>");
    Ok(s)
}

fn json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Result<T> {
    let text = read(dir, name)?;
    serde_json::from_str(&text).map_err(|e| Error::Format {
        path: dir.join(name),
        reason: format!("unreadable: {e}"),
    })
}

/// The page of a search (`strata tune`): the trials, the importance, the figures.
pub fn search_page(dir: &Path) -> Page {
    let mut page = Page::new(&format!("Search {}", name_of(dir)));
    match json::<TuneReport>(dir, "results.json") {
        Ok(r) => {
            let finished = r.trials.iter().filter(|t| t.metric.is_some()).count();
            page.summary = format!(
                "{:?} search, {} trials ({finished} finished), ranked by {}, {:.0} s",
                r.strategy,
                r.trials.len(),
                escape(&r.metric),
                r.time_s
            );
            if let Some(b) = r.best() {
                page.summary.push_str(&format!(
                    " · best: trial {} with {} = {:.4}",
                    b.id,
                    escape(&r.metric),
                    b.metric.unwrap_or(f64::NAN)
                ));
            }
            let fields: Vec<String> = r
                .trials
                .first()
                .map(|t| t.values.keys().cloned().collect())
                .unwrap_or_default();
            let mut head: Vec<&str> = vec!["trial"];
            head.extend(fields.iter().map(String::as_str));
            head.extend(["epochs", "val acc", "val loss", "seconds", "error"]);
            let rows: Vec<Vec<String>> = r
                .trials
                .iter()
                .map(|t| {
                    let mut row = vec![t.id.to_string()];
                    row.extend(
                        fields
                            .iter()
                            .map(|f| t.values.get(f).map_or("-".into(), |v| escape(&show(v)))),
                    );
                    row.extend([
                        t.epochs.to_string(),
                        t.val_acc
                            .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                        t.val_loss.map_or("-".into(), |l| format!("{l:.4}")),
                        format!("{:.0}", t.time_s),
                        t.error.as_deref().map_or(String::new(), escape),
                    ]);
                    row
                })
                .collect();
            page.section("Trials, best first", table(&head, &rows));
            let imp: Vec<Vec<String>> = r
                .importance
                .iter()
                .map(|(f, v)| vec![escape(f), format!("{:.0}%", 100.0 * v)])
                .collect();
            if !imp.is_empty() {
                page.section(
                    "Importance: the share of the metric's variance each field explains alone",
                    table(&["field", "importance"], &imp),
                );
            }
        }
        Err(e) => page.missing(format!("results.json (the trials): {e}")),
    }
    page.try_section(
        "Metric against each hyperparameter; best so far",
        figures(dir),
    );
    match read(dir, "best.toml") {
        Ok(t) => page.section(
            "Best configuration (best.toml)",
            format!("<pre>{}</pre>", escape(&t)),
        ),
        Err(_) => page.missing("best.toml (no trial finished)"),
    }
    page
}

/// The page of an LR sweep (`strata lr-find`).
pub fn lr_find_page(dir: &Path) -> Page {
    let mut page = Page::new(&format!("Learning-rate sweep {}", name_of(dir)));
    match json::<LrFindReport>(dir, "lr_find.json") {
        Ok(r) => {
            page.summary = format!(
                "<b>{}</b> on <b>{}</b>: suggested rate <b>{:.2e}</b> ({}); minimum of the \
                 smoothed loss at {:.2e}, steepest fall at {:.2e}; the configuration's rate {:.2e}",
                escape(&r.model),
                escape(&r.data),
                r.suggestion,
                escape(&r.rule),
                r.min_lr,
                r.steepest_lr,
                r.config_lr
            );
            page.section(
                "The sweep",
                format!(
                    "<p>{} steps; it stopped: {}</p>",
                    r.points.len(),
                    escape(&r.stopped)
                ),
            );
            if !r.probe.is_empty() {
                let rows = r
                    .probe
                    .iter()
                    .map(|p| {
                        let v = serde_json::to_value(p).unwrap_or_default();
                        v.as_object()
                            .map(|o| o.values().map(|x| escape(&x.to_string())).collect())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<Vec<String>>>();
                let head: Vec<String> = serde_json::to_value(r.probe[0])
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
                    .unwrap_or_default();
                let head: Vec<&str> = head.iter().map(String::as_str).collect();
                page.section("Probe: short runs at a few rates", table(&head, &rows));
            }
        }
        Err(e) => page.missing(format!("lr_find.json (the sweep): {e}")),
    }
    page.try_section("Loss against learning rate", figures(dir));
    page
}

/// The page of a study (`strata study`): its claims, its runs, its figures.
pub fn study_page(dir: &Path) -> Page {
    let mut page = Page::new(&format!("Study {}", name_of(dir)));
    match read(dir, "claims.txt") {
        Ok(text) => {
            let holds = text.matches("[holds]").count();
            let not = text.matches("[does not hold here]").count();
            page.summary = format!("{holds} of the lecture's claims hold here, {not} do not");
            let body: String = text
                .split("\n\n")
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    let cls = if p.contains("[holds]") { "ok" } else { "wrong" };
                    format!(
                        "<p class=\"claim {cls}\">{}</p>",
                        escape(p).replace('\n', "<br>")
                    )
                })
                .collect();
            page.section("The lecture's claims, on these numbers", body);
        }
        Err(e) => page.missing(format!("claims.txt: {e}")),
    }
    page.try_section("Figures", figures(dir));
    match json::<serde_json::Value>(dir, "results.json") {
        Ok(v) => {
            // Studies that train list runs with curves; show their last points.
            let runs = v["runs"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = runs
                .iter()
                .filter_map(|r| {
                    let c = if r["curve"].is_object() {
                        &r["curve"]
                    } else {
                        r
                    };
                    let last = c["points"].as_array()?.last()?.clone();
                    let pct = |x: &serde_json::Value| {
                        x.as_f64()
                            .map_or("-".into(), |e| format!("{:.2}%", 100.0 * e))
                    };
                    Some(vec![
                        escape(c["label"].as_str().unwrap_or("?")),
                        pct(&last["train_err"]),
                        pct(&last["val_err"]),
                        pct(&c["test_acc"]),
                        c["seconds"]
                            .as_f64()
                            .map_or("-".into(), |s| format!("{s:.0}")),
                    ])
                })
                .collect();
            if !rows.is_empty() {
                page.section(
                    "Runs (at their last epoch)",
                    table(
                        &[
                            "run",
                            "train error",
                            "val error",
                            "test accuracy",
                            "seconds",
                        ],
                        &rows,
                    ),
                );
            }
        }
        Err(e) => page.missing(format!("results.json: {e}")),
    }
    page
}
