//! The page of a recipe (`strata recipe`): each step told — what was run, what it
//! showed, the decision — with the figures that show it.

use super::{escape, png_img, Page};
use crate::method::Status;
use crate::recipe::RecipeReport;
use crate::train::History;
use std::path::Path;

/// The page of the recipe in `dir`.
pub fn recipe_page(dir: &Path) -> Page {
    let mut page = Page::new("The recipe: the lecture's seven steps");
    let r: RecipeReport = match super::read(dir, "recipe.json").and_then(|t| {
        serde_json::from_str(&t).map_err(|e| crate::error::Error::state("report", e.to_string()))
    }) {
        Ok(r) => r,
        Err(e) => {
            page.missing(format!("recipe.json: {e}"));
            return page;
        }
    };
    page.summary = format!(
        "<b>{}</b> on <b>{}</b>, budget {} minutes, took {:.1} minutes{}{}",
        escape(&r.model),
        escape(&r.data),
        r.minutes,
        r.seconds / 60.0,
        r.test_acc.map_or(String::new(), |a| format!(
            " · final test accuracy <b>{:.2}%</b>",
            100.0 * a
        )),
        r.stopped.as_deref().map_or(String::new(), |s| format!(
            " · <span class=\"wrong\">stopped early: {}</span>",
            escape(s)
        ))
    );
    for s in &r.steps {
        let cls = match s.status {
            Status::Pass => "ok",
            _ => "wrong",
        };
        let mut body = format!(
            "<p><b>Ran:</b> <code>{}</code> ({:.0} s)</p><p><b>Showed:</b> {}</p>\
             <p class=\"{cls}\"><b>Decision:</b> {}</p>",
            escape(&s.ran),
            s.seconds,
            escape(&s.showed),
            escape(&s.decision)
        );
        if let Some(d) = &s.dir {
            body.push_str(&figures_of(&dir.join(d), &s.name));
            if dir.join(d).join("report.html").is_file() {
                body.push_str(&format!(
                    "<p>Its own page: <a href=\"{0}/report.html\">{0}/report.html</a></p>",
                    escape(d)
                ));
            }
        }
        page.section(&s.name, body);
    }
    if let Some(s) = &r.stopped {
        page.section("Stopped", format!("<p class=\"wrong\">{}</p>", escape(s)));
    }
    if let Some(cfg) = &r.best {
        if let Ok(t) = cfg.to_toml() {
            page.section(
                "The configuration trained last",
                format!("<pre>{}</pre>", escape(&t)),
            );
        }
    }
    page
}

/// The picture that belongs to a step: the check's preview, the sweep, the best-so-far
/// curve of a search, the final run's curves.
fn figures_of(dir: &Path, step: &str) -> String {
    let svg = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .and_then(|t| t.find("<svg").map(|i| t[i..].to_string()))
    };
    if step.starts_with("1.") {
        return std::fs::read(dir.join("preview.png"))
            .map(|png| png_img(&png, "a preview of the data", 300))
            .unwrap_or_default();
    }
    if step.starts_with("3.") {
        return svg("lr_find.svg").unwrap_or_default();
    }
    if step.starts_with("4.") || step.starts_with("5.") {
        return svg("best_so_far.svg").unwrap_or_default();
    }
    if step.starts_with("6.") {
        if let Ok(h) = History::read(&dir.join("history.jsonl")) {
            return super::run::curves(&h).unwrap_or_default();
        }
    }
    String::new()
}
