//! `report.html` for each kind of folder: self-contained, every section there, what is
//! missing said; and, where Debian's `chromium` is installed (CI installs it and sets
//! `STRATA_REQUIRE_CHROMIUM=1`), loaded headless: a screenshot, no console message, no
//! request by the page, every SVG parsed into the DOM.

use super::embedded;
use std::path::{Path, PathBuf};
use std::process::Command;
use strata::report::{self, Kind};
use strata::train::{self, Quiet, RunPaths, TrainConfig};

fn tiny_run(dir: &Path) -> PathBuf {
    let cfg = TrainConfig {
        data: embedded(),
        per_class: Some(30),
        epochs: 2,
        batch_size: 32,
        width: Some(0.25),
        workers: 1,
        watch: Some(5),
        ..TrainConfig::default()
    };
    let run = dir.join("run");
    train::run(&cfg, &RunPaths::new(&run), false, &mut Quiet).unwrap();
    run
}

fn lr_sweep(dir: &Path) -> PathBuf {
    use strata::method::lr_find::{lr_find, LrFindOptions};
    let out = dir.join("lr");
    let cfg = TrainConfig {
        data: embedded(),
        per_class: Some(30),
        batch_size: 16,
        width: Some(0.25),
        workers: 1,
        ..TrainConfig::default()
    };
    let opts = LrFindOptions {
        iterations: 20,
        out: Some(out.clone()),
        ..LrFindOptions::default()
    };
    lr_find(&cfg, &opts, &mut Quiet).unwrap();
    out
}

fn study(dir: &Path) -> PathBuf {
    use strata::study::init::{init_study, InitOptions};
    let out = dir.join("study");
    init_study(&InitOptions {
        data: embedded(),
        batch: 16,
        width: 0.25,
        out: Some(out.clone()),
        ..InitOptions::default()
    })
    .unwrap();
    out
}

fn search(dir: &Path) -> PathBuf {
    use strata::tune::{self, SearchSpace};
    let text = format!(
        "[search]\nstrategy = \"random\"\ntrials = 2\nseed = 1\n\n[fixed]\ndata = \"{}\"\n\
         epochs = 1\nper_class = 20\nwidth = 0.25\nworkers = 1\nbatch_size = 32\n\n[space]\n\
         lr = \"log_uniform(1e-3, 1e-1)\"\n",
        embedded()
    );
    let s = SearchSpace::parse(&text).unwrap();
    let out = dir.join("search");
    let mut ex = tune::Local::new(Path::new(env!("CARGO_BIN_EXE_strata")), 1, 2);
    tune::run(&s, &text, &out, &mut ex, &mut Quiet).unwrap();
    out
}

fn recipe_folder(dir: &Path, lr: f32) -> (PathBuf, strata::recipe::RecipeReport) {
    use strata::recipe::{recipe, RecipeOptions};
    let out = dir.join(format!("recipe-{lr}"));
    let cfg = TrainConfig {
        data: embedded(),
        width: Some(0.25),
        workers: 1,
        lr,
        ..TrainConfig::default()
    };
    let r = recipe(
        &RecipeOptions {
            train: cfg,
            minutes: 0.25,
            out: out.clone(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_strata")),
            coarse_trials: 3,
            fine_trials: 2,
        },
        &mut Quiet,
    )
    .unwrap();
    for d in ["lr-find", "coarse", "fine", "final"] {
        if out.join(d).is_dir() {
            report::build(&out.join(d)).unwrap();
        }
    }
    (out, r)
}

#[test]
fn the_recipe_runs_its_seven_steps_in_a_tiny_budget_and_stops_early_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, r) = recipe_folder(tmp.path(), 0.1);
    assert!(r.stopped.is_none(), "{:?}", r.stopped);
    let names: Vec<&str> = r.steps.iter().map(|s| &s.name[..2]).collect();
    assert_eq!(names, ["1.", "2.", "3.", "4.", "5.", "6.", "7."]);
    for s in &r.steps {
        assert!(
            !s.ran.is_empty() && !s.showed.is_empty() && !s.decision.is_empty(),
            "{s:?}"
        );
    }
    let acc = r.test_acc.unwrap();
    assert!(acc > 0.3, "the final run learned: {acc}");
    let best = r.best.as_ref().unwrap();
    assert!(best.lr > 0.0 && best.lr < 10.0);
    assert!(out.join("recipe.json").is_file() && out.join("final/best.safetensors").is_file());
    let w = report::build(&out).unwrap();
    assert_eq!(w.kind, Kind::Recipe);
    assert_eq!(w.sections.len(), 8, "{:?}", w.sections);
    let html = std::fs::read_to_string(&w.path).unwrap();
    self_contained(&html);
    assert!(
        check_svgs(&html) >= 3,
        "the sweep, the searches, the final curves"
    );

    // A rate so small that 20 images cannot be memorized: it stops at step 2, and says why.
    let (out, r) = recipe_folder(tmp.path(), 1e-9);
    assert_eq!(r.steps.len(), 2, "{:?}", r.steps);
    assert!(
        r.stopped.as_deref().unwrap().contains("cannot overfit"),
        "{:?}",
        r.stopped
    );
    assert!(!out.join("final").exists());
    let w = report::build(&out).unwrap();
    assert!(w.sections.iter().any(|s| s == "Stopped"));
}

/// The `<svg …>…</svg>` pieces of a page, each well-formed XML.
fn check_svgs(html: &str) -> usize {
    let mut n = 0;
    let mut rest = html;
    while let Some(i) = rest.find("<svg") {
        let end = rest[i..].find("</svg>").expect("an unclosed <svg>") + i + 6;
        let piece = &rest[i..end];
        roxmltree::Document::parse(piece).unwrap_or_else(|e| {
            panic!(
                "an SVG does not parse: {e}\n{}",
                &piece[..piece.len().min(300)]
            )
        });
        n += 1;
        rest = &rest[end..];
    }
    n
}

fn self_contained(html: &str) {
    for bad in [
        "<script",
        "<link",
        "http://",
        "https://",
        "@import",
        "src=\"/",
        "src=\"file",
    ] {
        // The SVG namespace is the one URL a page may name.
        let hits = html.matches(bad).count();
        let allowed = if bad == "http://" {
            html.matches("http://www.w3.org/").count()
        } else {
            0
        };
        assert_eq!(hits, allowed, "the page refers outside itself: {bad}");
    }
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
}

/// Loads `page` headless; returns the DOM after load. Fails on a console message or a
/// request made by the page (the browser's own service requests are not the page's:
/// their initiator is "not an origin").
fn browse(chrome: &Path, page: &Path, shot: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net.json");
    let url = format!("file://{}", page.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let profile = format!("--user-data-dir={}", tmp.path().join("profile").display());
    let out = Command::new(chrome)
        .args(common)
        .arg(&profile)
        .arg(format!("--log-net-log={}", net.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    let log = String::from_utf8_lossy(&out.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages on {url}: {console:?}");
    let netlog: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&net).unwrap()).unwrap();
    let page_requests: Vec<String> = netlog["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let p = &e["params"];
            let by_page = p["initiator"]
                .as_str()
                .is_some_and(|i| i != "not an origin");
            by_page.then(|| p["url"].as_str().unwrap_or("?").to_string())
        })
        .collect();
    assert!(
        page_requests.is_empty(),
        "{url} made requests: {page_requests:?}"
    );
    let shot_out = Command::new(chrome)
        .args(common)
        .arg(&profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,2400")
        .arg(&url)
        .output()
        .unwrap();
    assert!(shot_out.status.success());
    let png = std::fs::read(shot).unwrap();
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "a screenshot"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_kind_of_folder_gets_a_self_contained_page_that_a_browser_loads_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let folders = [
        (
            tiny_run(tmp.path()),
            Kind::Run,
            vec![
                "Curves",
                "Test results",
                "Test images and predictions",
                "Diagnosis",
                "Layers during training (watch.jsonl)",
                "Configuration",
                "Environment",
            ],
        ),
        (
            lr_sweep(tmp.path()),
            Kind::LrFind,
            vec!["The sweep", "Loss against learning rate"],
        ),
        (
            study(tmp.path()),
            Kind::Study,
            vec!["The lecture's claims, on these numbers", "Figures"],
        ),
        (
            search(tmp.path()),
            Kind::Search,
            vec![
                "Trials, best first",
                "Metric against each hyperparameter; best so far",
                "Best configuration (best.toml)",
            ],
        ),
    ];
    let chrome = chromium();
    if chrome.is_none() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_CHROMIUM").is_none(),
            "STRATA_REQUIRE_CHROMIUM is set but no chromium was found"
        );
        eprintln!("chromium not installed: the pages are checked without a browser");
    }
    for (dir, kind, sections) in &folders {
        let w = report::build(dir).unwrap();
        assert_eq!(w.kind, *kind);
        for s in sections {
            assert!(
                w.sections.iter().any(|x| x == s),
                "{kind:?}: no section {s}: {:?}",
                w.sections
            );
        }
        assert!(w.missing.is_empty(), "{kind:?}: {:?}", w.missing);
        let html = std::fs::read_to_string(&w.path).unwrap();
        self_contained(&html);
        let svgs = check_svgs(&html);
        assert!(svgs >= 1, "{kind:?}: no figure");
        if let Some(c) = &chrome {
            let dom = browse(c, &w.path, &tmp.path().join(format!("{kind:?}.png")));
            // Every SVG became an element of the DOM, and every section is there.
            assert_eq!(dom.matches("<svg").count(), svgs, "{kind:?}");
            assert!(!dom.contains("parsererror"));
            for s in sections {
                assert!(
                    dom.contains(&report::escape(s)),
                    "{kind:?}: {s} not in the DOM"
                );
            }
        }
    }
    // A run page shows test images as embedded PNGs.
    let run_html = std::fs::read_to_string(folders[0].0.join("report.html")).unwrap();
    assert!(run_html.matches("data:image/png;base64,").count() >= 24);
}

#[test]
fn a_run_with_missing_files_still_gets_a_page_that_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    // Truncate the history mid-line, remove the metrics and the best weights.
    let h = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let cut = h.lines().take(2).collect::<Vec<_>>().join("\n") + "\n{\"kind\":\"ep";
    std::fs::write(run.join("history.jsonl"), cut).unwrap();
    std::fs::remove_file(run.join("metrics.json")).unwrap();
    std::fs::remove_file(run.join("best.safetensors")).unwrap();
    let w = report::build(&run).unwrap();
    let all = w.missing.join("\n");
    assert!(all.contains("metrics.json"), "{all}");
    assert!(all.contains("predictions"), "{all}");
    assert!(w.sections.iter().any(|s| s == "Configuration"));
    let html = std::fs::read_to_string(&w.path).unwrap();
    assert!(html.contains("id=\"missing\""));
    check_svgs(&html);
    // Not a folder strata writes.
    let empty = tempfile::tempdir().unwrap();
    let e = report::build(empty.path()).unwrap_err().to_string();
    assert!(e.contains("not a folder strata writes"), "{e}");
}
