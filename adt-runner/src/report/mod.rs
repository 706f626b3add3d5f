//! Reporting a stored result: reporter programs (each run with the result
//! directory as its argument) and the built-in e-mail reporter (`mail`).
//!
//! Not for: storing (`results`) or classifying (`history`) the result.

pub mod mail;

use std::path::Path;
use std::process::{Command, Stdio};

use crate::results;

/// The configured reporters.
#[derive(Debug, Clone, Default)]
pub struct Reporters {
    /// Shell command lines; the result directory is appended as an argument.
    pub programs: Vec<String>,
    pub mail: Option<mail::MailConfig>,
}

/// `REGRESSION (exit code 4)`.
pub fn verdict_text(class: &str, exitcode: Option<i32>) -> String {
    match exitcode {
        Some(c) => format!("{class} (exit code {c})"),
        None => class.to_string(),
    }
}

impl Reporters {
    /// Tells everyone about the result in `dir` whose verdict is
    /// `verdict`. Every reporter is tried; the failures are returned
    /// together. A mail that cannot be sent now stays spooled and is not
    /// a failure.
    pub fn report(&self, dir: &Path, verdict: &str) -> Result<(), String> {
        let loaded = results::load(dir)?;
        let (source, version) = loaded.package().unwrap_or_else(|| {
            let src = loaded.request["source"].as_str().unwrap_or("unknown");
            (src.to_string(), String::new())
        });
        let mut errors = Vec::new();
        for prog in &self.programs {
            let status = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{prog} \"$1\""))
                .arg("sh")
                .arg(dir)
                .env("ADT_SOURCE", &source)
                .env("ADT_VERSION", &version)
                .env("ADT_VERDICT", verdict)
                .stdin(Stdio::null())
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => errors.push(format!("reporter {prog:?} on {}: {s}", dir.display())),
                Err(e) => errors.push(format!("cannot run reporter {prog:?}: {e}")),
            }
        }
        if let Some(cfg) = &self.mail {
            let log = results::read_log(dir).unwrap_or_default();
            let summary = loaded.text("summary");
            let empty = serde_json::Map::new();
            let control = loaded.request["control"].as_object().unwrap_or(&empty);
            let r = mail::Report {
                source: &source,
                version: &version,
                verdict,
                summary: &summary,
                log: &log,
                control,
                result_dir: dir,
            };
            match mail::compose(cfg, &r).and_then(|m| mail::send(cfg, &m)) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(waiting = n, "mail spooled for a later try"),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
