//! The one-shot commands around the service: `next` (what would be
//! tested next, and why), `history SRC`, `web --out DIR`, `report DIR`.
//! Each reads the same configuration as `loop`, changes no selector state.
//!
//! Not for: the loop itself (`service`).

use std::path::Path;

use crate::history::History;
use crate::loopconfig::{Config, HistoryArgs, LoopArgs, NextArgs, ReportArgs, WebArgs};
use crate::report::verdict_text;
use crate::verdict::ERROR;
use crate::web::{self, Site};

fn fail(cmd: &str, e: String) -> i32 {
    eprintln!("adt-runner {cmd}: {e}");
    ERROR
}

/// `adt-runner next`: prints the pick (`SRC [JSON]`) and why.
pub fn next(args: &NextArgs) -> i32 {
    let cfg = Config::load(&LoopArgs {
        common: args.common.clone(),
        selector: args.selector.clone(),
        sources: args.sources.clone(),
        ..LoopArgs::default()
    });
    let pick = cfg.and_then(|c| c.selector().next(true));
    match pick {
        Ok(Some(p)) => {
            let json = p.request.json();
            if json == "{}" {
                println!("{}", p.request.source);
            } else {
                println!("{} {json}", p.request.source);
            }
            println!("why: {}", p.why);
            0
        }
        Ok(None) => {
            println!("why: the selector has nothing to test now");
            0
        }
        Err(e) => fail("next", e),
    }
}

/// `adt-runner history SRC`.
pub fn history(args: &HistoryArgs) -> i32 {
    let show = || -> Result<i32, String> {
        let cfg = Config::load_common(&args.common)?;
        let path = cfg.history_path();
        if !path.exists() {
            return Err(format!(
                "no history at {} (nothing was tested with these results yet)",
                path.display()
            ));
        }
        let h = History::open(&path)?;
        let runs = h.runs(&args.source, args.limit)?;
        if runs.is_empty() {
            println!("{}: no runs in {}", args.source, path.display());
            return Ok(1);
        }
        let counts = h.counts(&args.source)?;
        let counts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("{}: {}", args.source, counts.join(", "));
        println!(
            "{:<19}  {:<24} {:<10} {:>4} {:>8}  result",
            "date (UTC)", "version", "status", "exit", "duration"
        );
        for r in &runs {
            println!(
                "{:<19}  {:<24} {:<10} {:>4} {:>7}s  {}",
                web::date(&r.started),
                r.version,
                r.class.as_str(),
                r.exitcode,
                r.duration,
                cfg.results.join(&r.result_dir).display()
            );
        }
        println!("\nlatest run's tests:");
        for t in h.tests(runs[0].id)? {
            println!(
                "  {:<24} {:<10} {} {}",
                t.name,
                t.class.as_str(),
                t.result,
                t.detail
            );
        }
        Ok(0)
    };
    show().unwrap_or_else(|e| fail("history", e))
}

/// `adt-runner web --out DIR`.
pub fn web(args: &WebArgs) -> i32 {
    let render = || -> Result<(), String> {
        let cfg = Config::load_common(&args.common)?;
        let out = args
            .out
            .clone()
            .or(cfg.web_out.clone())
            .ok_or("no output directory: give --out DIR or `web-out` in the configuration")?;
        let h = History::open(&cfg.history_path())?;
        let site = Site {
            out: out.clone(),
            results_url: cfg.results_url.clone(),
            results_dir: cfg.results.clone(),
        };
        let n = site.render_all(&h)?;
        println!("{n} pages written to {}", out.display());
        Ok(())
    };
    render().map_or_else(|e| fail("web", e), |()| 0)
}

/// `adt-runner report DIR`: runs the configured reporters on a stored result.
pub fn report(args: &ReportArgs) -> i32 {
    let run = || -> Result<(), String> {
        let cfg = Config::load_common(&args.common)?;
        let loaded = crate::results::load(&args.dir)?;
        let dir = crate::web::absolute(&args.dir);
        let rel = dir
            .strip_prefix(crate::web::absolute(&cfg.results))
            .unwrap_or(Path::new(""))
            .to_string_lossy()
            .into_owned();
        let class = History::open(&cfg.history_path())
            .and_then(|h| h.run_by_dir(&rel))
            .ok()
            .flatten()
            .map_or("UNCLASSIFIED", |r| r.class.as_str());
        cfg.reporters
            .report(&args.dir, &verdict_text(class, loaded.exitcode()))
    };
    run().map_or_else(|e| fail("report", e), |()| 0)
}
