//! The web report: static HTML rendered from the history, with the same
//! data as JSON beside each page: `index.html` (the latest result of every
//! source), `packages/<src>.html` (one source's history, linking to its
//! logs and artifacts), `regressions.html`. Plain HTML and one small
//! stylesheet inlined, readable on a phone.
//!
//! Pages are regenerable, so they are replaced by rename (never seen half
//! written) but not fsynced.
//!
//! Not for: the data itself (`history`), serving it (any web server
//! serves the output directory).

use std::fmt::Write as _;
use std::fs;
use std::path::{Component, Path, PathBuf};

use serde_json::json;

use crate::history::{Class, History, Run};

/// Runs shown on a package page (the rest: `adt-runner history SRC`).
pub const PAGE_RUNS: usize = 200;

/// Where pages go and how they reach the results.
pub struct Site {
    pub out: PathBuf,
    /// URL (or path) of the results root as seen from the web; `None`: a
    /// relative path from the pages to the results directory.
    pub results_url: Option<String>,
    pub results_dir: PathBuf,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `20261122_080000` → `2026-11-22 08:00:00`.
pub fn date(stamp: &str) -> String {
    let b = stamp.as_bytes();
    if b.len() != 15 || b[8] != b'_' {
        return stamp.to_string();
    }
    format!(
        "{}-{}-{} {}:{}:{}",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub fn absolute(p: &Path) -> PathBuf {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The relative path from directory `from` to `to`.
fn relative(from: &Path, to: &Path) -> String {
    let (from, to) = (absolute(from), absolute(to));
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); f.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

const STYLE: &str = "
:root{--fg:#1d2126;--muted:#5f6b76;--line:#dde2e6;--bg:#fff}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:12px 16px;border-bottom:1px solid var(--line);display:flex;flex-wrap:wrap;gap:8px 20px;align-items:baseline}
header h1{font-size:1.2rem;margin:0}
nav a{margin-right:14px}
main{padding:12px 16px;max-width:1100px}
a{color:#0b57a4;text-decoration:none}a:hover{text-decoration:underline}
.wrap{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;min-width:320px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-weight:600;color:var(--muted);font-size:.85rem}
td.detail{white-space:normal;color:var(--muted)}
.badge{display:inline-block;padding:1px 7px;border-radius:10px;font-size:.8rem;font-weight:600;color:#fff}
.PASS{background:#2e7d32}.REGRESSION{background:#c62828}.ALWAYSFAIL{background:#8d6e63}
.FLAKY{background:#ef6c00}.NEUTRAL{background:#78909c}.TMPFAIL{background:#6a1b9a}
.counts{display:flex;flex-wrap:wrap;gap:6px;margin:4px 0 14px}
.muted{color:var(--muted)}
@media (max-width:600px){body{font-size:14px}th,td{padding:5px 6px}.hide-s{display:none}td.date{white-space:normal;min-width:6em}}
";

fn page(title: &str, root: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>{STYLE}</style></head><body>\
<header><h1>{t}</h1><nav><a href=\"{root}index.html\">All sources</a>\
<a href=\"{root}regressions.html\">Regressions</a></nav></header>\
<main>{body}</main></body></html>\n",
        t = esc(title)
    )
}

fn badge(c: Class) -> String {
    format!("<span class=\"badge {c}\">{c}</span>")
}

fn counts_html(counts: &[(Class, u64)]) -> String {
    let mut s = String::from("<div class=\"counts\">");
    for c in Class::ALL {
        if let Some((_, n)) = counts.iter().find(|(k, _)| *k == c) {
            let _ = write!(s, "<span class=\"badge {c}\">{c} {n}</span>");
        }
    }
    s + "</div>"
}

fn write_page(path: &Path, content: &str) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::write(&tmp, content).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn run_json(r: &Run) -> serde_json::Value {
    json!({
        "source": r.source, "version": r.version, "class": r.class.as_str(),
        "exitcode": r.exitcode, "started": r.started, "duration": r.duration,
        "release": r.release, "arch": r.arch, "result_dir": r.result_dir,
    })
}

impl Site {
    /// Link to a file of a result, as seen from a page in `page_dir`.
    fn result_link(&self, page_dir: &Path, r: &Run, file: &str) -> String {
        match &self.results_url {
            Some(u) => format!("{}/{}/{file}", u.trim_end_matches('/'), r.result_dir),
            None => format!(
                "{}/{}/{file}",
                relative(page_dir, &self.results_dir),
                r.result_dir
            ),
        }
    }

    /// Renders everything: index, regressions, one page per source.
    /// Returns how many pages were written.
    pub fn render_all(&self, hist: &History) -> Result<usize, String> {
        let latest = hist.latest()?;
        for r in &latest {
            self.render_source(hist, &r.source)?;
        }
        self.render_index_from(&latest)?;
        self.render_regressions_from(hist, &latest)?;
        Ok(latest.len() + 2)
    }

    /// Renders what one new run of `source` changes: its page, the index,
    /// the regressions page.
    pub fn render_after_run(&self, hist: &History, source: &str) -> Result<(), String> {
        self.render_source(hist, source)?;
        let latest = hist.latest()?;
        self.render_index_from(&latest)?;
        self.render_regressions_from(hist, &latest)
    }

    /// `index.html` and `index.json`.
    pub fn render_index(&self, hist: &History) -> Result<(), String> {
        self.render_index_from(&hist.latest()?)
    }

    fn render_index_from(&self, latest: &[Run]) -> Result<(), String> {
        let mut counts: Vec<(Class, u64)> = Vec::new();
        for r in latest {
            match counts.iter_mut().find(|(c, _)| *c == r.class) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.class, 1)),
            }
        }
        let mut rows = String::new();
        for r in latest {
            let _ = write!(
                rows,
                "<tr><td><a href=\"packages/{s}.html\">{s}</a></td><td>{v}</td><td>{b}</td>\
<td>{d}</td><td class=\"hide-s\">{du}</td></tr>",
                s = esc(&r.source),
                v = esc(&r.version),
                b = badge(r.class),
                d = date(&r.started),
                du = duration(r.duration)
            );
        }
        let body = format!(
            "<p class=\"muted\">Latest result of {n} sources.</p>{c}<div class=\"wrap\"><table id=\"latest\">\
<thead><tr><th>Source</th><th>Version</th><th>Status</th><th>Date (UTC)</th><th class=\"hide-s\">Duration</th></tr></thead>\
<tbody>{rows}</tbody></table></div>",
            n = latest.len(),
            c = counts_html(&counts)
        );
        write_page(
            &self.out.join("index.html"),
            &page("autopkgtest results", "", &body),
        )?;
        let j: Vec<_> = latest.iter().map(run_json).collect();
        write_page(
            &self.out.join("index.json"),
            &serde_json::to_string(&j).unwrap_or_default(),
        )
    }

    /// `regressions.html` and `regressions.json`.
    pub fn render_regressions(&self, hist: &History) -> Result<(), String> {
        self.render_regressions_from(hist, &hist.latest()?)
    }

    fn render_regressions_from(&self, hist: &History, latest: &[Run]) -> Result<(), String> {
        let regs: Vec<&Run> = latest
            .iter()
            .filter(|r| r.class == Class::Regression)
            .collect();
        let mut rows = String::new();
        let mut j = Vec::new();
        for r in &regs {
            let failing: Vec<_> = hist
                .tests(r.id)?
                .into_iter()
                .filter(|t| t.class == Class::Regression)
                .map(|t| t.name)
                .collect();
            let _ = write!(
                rows,
                "<tr><td><a href=\"packages/{s}.html\">{s}</a></td><td>{v}</td><td>{t}</td><td>{d}</td>\
<td><a href=\"{log}\">log</a></td></tr>",
                s = esc(&r.source),
                v = esc(&r.version),
                t = esc(&failing.join(", ")),
                d = date(&r.started),
                log = esc(&self.result_link(&self.out, r, "log.gz")),
            );
            let mut v = run_json(r);
            v["tests"] = json!(failing);
            j.push(v);
        }
        let body = if regs.is_empty() {
            "<p>No source regresses.</p>".to_string()
        } else {
            format!(
                "<p class=\"muted\">{n} sources whose tests passed before and fail now.</p>\
<div class=\"wrap\"><table id=\"regressions\"><thead><tr><th>Source</th><th>Version</th><th>Tests</th>\
<th>Date (UTC)</th><th>Log</th></tr></thead><tbody>{rows}</tbody></table></div>",
                n = regs.len()
            )
        };
        write_page(
            &self.out.join("regressions.html"),
            &page("Regressions", "", &body),
        )?;
        write_page(
            &self.out.join("regressions.json"),
            &serde_json::to_string(&j).unwrap_or_default(),
        )
    }

    /// `packages/<source>.html` and `.json`: counts, the latest run's
    /// tests, the newest `PAGE_RUNS` runs with links to their files.
    pub fn render_source(&self, hist: &History, source: &str) -> Result<(), String> {
        crate::results::check_name(source)?;
        let dir = self.out.join("packages");
        let runs = hist.runs(source, PAGE_RUNS)?;
        let counts = hist.counts(source)?;
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let tests = match runs.first() {
            Some(r) => hist.tests(r.id)?,
            None => Vec::new(),
        };
        let mut body = counts_html(&counts);
        if let Some(r) = runs.first() {
            let _ = write!(
                body,
                "<h2>Latest: {v} {b}</h2><div class=\"wrap\"><table id=\"tests\"><thead><tr><th>Test</th>\
<th>Result</th><th>Status</th></tr></thead><tbody>",
                v = esc(&r.version),
                b = badge(r.class)
            );
            for t in &tests {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td class=\"detail\">{} {}</td><td>{}</td></tr>",
                    esc(&t.name),
                    esc(&t.result),
                    esc(&t.detail),
                    badge(t.class)
                );
            }
            body.push_str("</tbody></table></div>");
        }
        let _ = write!(
            body,
            "<h2>History</h2><div class=\"wrap\"><table id=\"history\"><thead><tr><th>Date (UTC)</th>\
<th>Version</th><th>Status</th><th class=\"hide-s\">Exit</th><th class=\"hide-s\">Duration</th>\
<th>Files</th></tr></thead><tbody>"
        );
        for r in &runs {
            let link = |f: &str| esc(&self.result_link(&dir, r, f));
            let _ = write!(
                body,
                "<tr><td class=\"date\">{d}</td><td>{v}</td><td>{b}</td><td class=\"hide-s\">{e}</td>\
<td class=\"hide-s\">{du}</td><td><a href=\"{l}\">log</a> · <a href=\"{a}\">artifacts</a> · \
<a href=\"{t}\">result</a></td></tr>",
                d = date(&r.started),
                v = esc(&r.version),
                b = badge(r.class),
                e = r.exitcode,
                du = duration(r.duration),
                l = link("log.gz"),
                a = link("artifacts.tar.gz"),
                t = link("result.tar"),
            );
        }
        body.push_str("</tbody></table></div>");
        if total > runs.len() as u64 {
            let _ = write!(
                body,
                "<p class=\"muted\">{} older runs are not shown; <code>adt-runner history {}</code> lists them.</p>",
                total - runs.len() as u64,
                esc(source)
            );
        }
        write_page(
            &dir.join(format!("{source}.html")),
            &page(source, "../", &body),
        )?;
        let j = json!({
            "source": source,
            "runs_total": total,
            "counts": counts.iter().map(|(c, n)| (c.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "latest_tests": tests.iter().map(|t| json!({
                "name": t.name, "result": t.result, "detail": t.detail, "class": t.class.as_str()
            })).collect::<Vec<_>>(),
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        });
        write_page(&dir.join(format!("{source}.json")), &j.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn relative_paths_climb_to_the_common_parent() {
        assert_eq!(
            relative(Path::new("/w/out/packages"), Path::new("/w/results")),
            "../../results"
        );
        assert_eq!(relative(Path::new("/w/r"), Path::new("/w/r")), ".");
        assert_eq!(relative(Path::new("/w/r/web"), Path::new("/w/r")), "..");
    }

    #[test]
    fn dates_and_durations_read_well() {
        assert_eq!(date("20261122_080102"), "2026-11-22 08:01:02");
        assert_eq!(date("odd"), "odd");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m01s");
        assert_eq!(duration(7260), "2h01m");
    }
}
