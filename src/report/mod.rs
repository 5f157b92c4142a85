//! `report.html`: one self-contained page per run, search, LR sweep or study, for a
//! person to open in a browser, offline.
//!
//! Everything is inside the file — charts as inline SVG, images as PNG data URIs, the
//! style in one `<style>` element — and nothing needs JavaScript or the network. A page
//! is built from the files a folder holds; a file that is missing or unreadable costs its
//! section, not the page: the page says what is missing at its top ([`Page::missing`]).
//!
//! [`build`] tells the kind of folder from its files and writes its page:
//! - a run (`history.jsonl`): [`run::run_page`];
//! - a search (`results.json` of `strata tune`), an LR sweep (`lr_find.json`), a study
//!   (`claims.txt`): [`others`];
//! - a recipe (`recipe.json`): [`recipe::recipe_page`], each step told.

pub mod others;
pub mod recipe;
pub mod run;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The kinds of folder a report is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A training run (`strata train`, `strata finetune`).
    Run,
    /// A hyperparameter search (`strata tune`).
    Search,
    /// A learning-rate sweep (`strata lr-find`).
    LrFind,
    /// A study (`strata study`).
    Study,
    /// The seven steps (`strata recipe`).
    Recipe,
}

/// What [`build`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Written {
    /// The page.
    pub path: PathBuf,
    /// The kind of folder.
    pub kind: Kind,
    /// The sections' titles, in order.
    pub sections: Vec<String>,
    /// What was missing or unreadable (each cost a section or part of one).
    pub missing: Vec<String>,
}

/// Tells what `dir` holds from its files.
pub fn detect(dir: &Path) -> Result<Kind> {
    let has = |f: &str| dir.join(f).is_file();
    if has("recipe.json") {
        Ok(Kind::Recipe)
    } else if has("history.jsonl") || has("config.toml") && has("last.safetensors") {
        Ok(Kind::Run)
    } else if has("lr_find.json") {
        Ok(Kind::LrFind)
    } else if has("claims.txt") {
        Ok(Kind::Study)
    } else if has("results.json") && (has("results.csv") || has("space.toml")) {
        Ok(Kind::Search)
    } else {
        Err(Error::Format {
            path: dir.to_path_buf(),
            reason: "not a folder strata writes: no history.jsonl (a run), results.json + \
                     results.csv (a search), lr_find.json (an LR sweep), claims.txt (a study) \
                     or recipe.json (a recipe)"
                .into(),
        })
    }
}

/// Writes `dir/report.html` for whatever `dir` holds.
pub fn build(dir: &Path) -> Result<Written> {
    if !dir.is_dir() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            reason: "not a folder".into(),
        });
    }
    let kind = detect(dir)?;
    let page = match kind {
        Kind::Run => run::run_page(dir),
        Kind::Search => others::search_page(dir),
        Kind::LrFind => others::lr_find_page(dir),
        Kind::Study => others::study_page(dir),
        Kind::Recipe => recipe::recipe_page(dir),
    };
    let path = dir.join("report.html");
    crate::checkpoint::write_atomic(&path, page.html().as_bytes())?;
    Ok(Written {
        path,
        kind,
        sections: page.sections.iter().map(|s| s.0.clone()).collect(),
        missing: page.missing,
    })
}

/// `s` with `& < > "` escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// `NotTrainedEnough` as `not trained enough` (an enum's name for a person).
pub fn words(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// An `<img>` of PNG bytes, as a data URI.
pub fn png_img(png: &[u8], alt: &str, width: u32) -> String {
    use base64::Engine;
    format!(
        "<img alt=\"{}\" width=\"{width}\" src=\"data:image/png;base64,{}\">",
        escape(alt),
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// A table: a header row and rows of cells (already HTML).
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        s.push_str(&format!("<th>{}</th>", escape(h)));
    }
    s.push_str("</tr>");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            s.push_str(&format!("<td>{c}</td>"));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// A page being built: a title, a summary line, sections, and what was missing.
#[derive(Clone, Debug, Default)]
pub struct Page {
    /// The page's title.
    pub title: String,
    /// One line under the title (HTML).
    pub summary: String,
    /// `(title, body HTML)` in order.
    pub sections: Vec<(String, String)>,
    /// What was missing or unreadable.
    pub missing: Vec<String>,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}\
th{background:#f2f2f2}td:first-child{text-align:left}pre{background:#f7f7f7;padding:.8em;overflow:auto}\
.missing{background:#fff4e5;border:1px solid #f0b070;padding:.6em}.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}\
.grid{display:flex;flex-wrap:wrap;gap:.6em}.grid figure{margin:0;text-align:center;font-size:.8em;width:96px}\
.wrong{color:#c00}.ok{color:#070}.claim{margin:.6em 0}";

impl Page {
    /// A page titled `title`.
    pub fn new(title: &str) -> Self {
        Page {
            title: title.to_string(),
            ..Page::default()
        }
    }

    /// Adds a section.
    pub fn section(&mut self, title: &str, body: String) {
        self.sections.push((title.to_string(), body));
    }

    /// Notes that `what` is missing or unreadable (shown at the top).
    pub fn missing(&mut self, what: impl Into<String>) {
        self.missing.push(what.into());
    }

    /// Adds a section from `body`, or notes why it could not be made.
    pub fn try_section(&mut self, title: &str, body: Result<String>) {
        match body {
            Ok(b) => self.section(title, b),
            Err(e) => self.missing(format!("{title}: {e}")),
        }
    }

    /// The whole page.
    pub fn html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"generator\" content=\"strata {}\"><title>{}</title><style>{STYLE}</style>\
             </head><body>\n<h1>{}</h1>\n<p>{}</p>\n",
            env!("CARGO_PKG_VERSION"),
            escape(&self.title),
            escape(&self.title),
            self.summary
        );
        if !self.missing.is_empty() {
            s.push_str("<div class=\"missing\" id=\"missing\"><b>Not shown</b> (missing or unreadable):<ul>");
            for m in &self.missing {
                s.push_str(&format!("<li>{}</li>", escape(m)));
            }
            s.push_str("</ul></div>\n");
        }
        for (i, (title, body)) in self.sections.iter().enumerate() {
            s.push_str(&format!(
                "<section id=\"s{i}\"><h2>{}</h2>\n{body}\n</section>\n",
                escape(title)
            ));
        }
        s.push_str("</body></html>\n");
        s
    }
}

/// Reads a file to a string, or says it is missing.
pub(crate) fn read(dir: &Path, name: &str) -> Result<String> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|source| Error::Io { path: p, source })
}
