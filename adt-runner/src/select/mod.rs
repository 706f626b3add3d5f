//! Selection: what to test next. A selector is a program that prints one
//! request line, `SRC [JSON]` (autopkgtest-cloud's request format: JSON
//! keys `triggers`, `env`, `testname`, ...), or nothing when idle; or one
//! of the built-ins over an archive Sources index: `round-robin`
//! (alphabetical, cursor persisted) and `changed-first` (see `changed`).
//! Every pick says why it was made, for `adt-runner next` and the log.
//!
//! Built-in selectors commit a pick (advance their cursor) only when told
//! the result is stored, so an interrupted run is picked again.
//!
//! Not for: running the request (`service`, `pipeline`).

pub mod changed;
pub mod sources;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::results::write_atomic;
use sources::Index;

/// A request: a source and autopkgtest-cloud's request parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// A source package name, or the path of a .dsc or unpacked tree.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// `K=V` strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testname: Option<String>,
    /// Other keys, kept for the record.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Request {
    /// Parses a request line `SRC [JSON]`; `what` names where it came from.
    pub fn parse(line: &str, what: &str) -> Result<Request, String> {
        let line = line.trim();
        let (src, json) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(s, j)| (s, j.trim()));
        let bad = |m: String| format!("{what}: bad request line {line:?}: {m}");
        if !src.starts_with('/') {
            crate::results::check_name(src).map_err(bad)?;
        }
        let mut req: Request = if json.is_empty() {
            Request::default()
        } else {
            serde_json::from_str(json).map_err(|e| {
                bad(format!(
                    "expected a JSON object with triggers, env, testname: {e}"
                ))
            })?
        };
        if let Some(e) = req.env.iter().find(|e| !e.contains('=')) {
            return Err(bad(format!("env entry {e:?} is not K=V")));
        }
        trigger_env(&req.env, &req.triggers).map_err(bad)?;
        req.source = src.to_string();
        Ok(req)
    }

    /// The parameters as JSON (without the source).
    pub fn json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("source");
        }
        v.to_string()
    }
}

/// The variable that carries a run's triggers to its tests, as
/// autopkgtest-cloud passes them (`--env ADT_TEST_TRIGGERS=...`); the
/// results' testinfo.json keeps it, where britney looks for it.
pub const TRIGGERS_VAR: &str = "ADT_TEST_TRIGGERS";

/// Checks a trigger: `SRC/VERSION`, a source name and a Debian version
/// (e.g. `glibc/2.36-9`, or autopkgtest-cloud's `migration-reference/0`).
pub fn check_trigger(trigger: &str) -> Result<(), String> {
    let Some((src, version)) = trigger.split_once('/') else {
        return Err(format!(
            "trigger {trigger:?} is not SRC/VERSION (e.g. glibc/2.36-9)"
        ));
    };
    crate::results::check_name(src).map_err(|e| format!("trigger {trigger:?}: {e}"))?;
    let version_ok =
        version.starts_with(|c: char| c.is_ascii_digit()) && crate::deps::is_valid_version(version);
    if !version_ok {
        return Err(format!(
            "trigger {trigger:?}: {version:?} is not a Debian version (a digit first, then letters, digits and . + ~ -; a colon only after a numeric epoch)"
        ));
    }
    Ok(())
}

/// `env` with the triggers added as `ADT_TEST_TRIGGERS=SRC/VER SRC/VER`
/// (unchanged when there are none); an error names a bad trigger, or an
/// `env` that sets the variable itself beside triggers.
pub fn trigger_env(env: &[String], triggers: &[String]) -> Result<Vec<String>, String> {
    let mut env = env.to_vec();
    if triggers.is_empty() {
        return Ok(env);
    }
    for t in triggers {
        check_trigger(t)?;
    }
    let prefix = format!("{TRIGGERS_VAR}=");
    if let Some(e) = env.iter().find(|e| e.starts_with(&prefix)) {
        return Err(format!(
            "both triggers and an env entry {e:?} set {TRIGGERS_VAR}; give the triggers one way"
        ));
    }
    env.push(format!("{prefix}{}", triggers.join(" ")));
    Ok(env)
}

/// A selector's choice and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub request: Request,
    pub why: String,
    /// What the archive looked like for this source when it was picked
    /// (JSON for the history; `changed-first` compares against it).
    pub seen: Option<String>,
    /// The source's control fields from the index (Maintainer, ...).
    pub control: serde_json::Map<String, serde_json::Value>,
}

/// Which selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    RoundRobin,
    ChangedFirst,
    Program(String),
}

impl Kind {
    /// The name as configured.
    pub fn name(&self) -> &str {
        match self {
            Kind::RoundRobin => "round-robin",
            Kind::ChangedFirst => "changed-first",
            Kind::Program(p) => p,
        }
    }

    pub fn parse(s: &str) -> Kind {
        match s {
            "round-robin" => Kind::RoundRobin,
            "changed-first" => Kind::ChangedFirst,
            p => Kind::Program(p.to_string()),
        }
    }
}

/// A selector with its persisted state.
pub struct Selector {
    pub kind: Kind,
    /// The Sources index (needed by the built-ins).
    pub sources: Option<PathBuf>,
    /// Where the cursor lives (`<results>/state/selector.json`).
    pub state: PathBuf,
    /// Results root, given to selector programs as ADT_RESULTS.
    pub results: PathBuf,
    /// `changed-first`: every Nth pick is the longest untested source.
    pub fair_every: u64,
    /// History database (for `changed-first`).
    pub history: PathBuf,
    /// Whether sources with only autodep8's `autopkgtest-pkg-*` have tests
    /// (the host has autodep8, which the runner then uses).
    pub autodep8: bool,
}

/// The persisted cursor of the built-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// round-robin: the last source whose result was stored.
    #[serde(default)]
    pub last: Option<String>,
    /// changed-first: picks committed so far.
    #[serde(default)]
    pub picks: u64,
}

impl State {
    pub fn load(path: &Path) -> Result<State, String> {
        match std::fs::read_to_string(path) {
            Ok(s) => serde_json::from_str(&s).map_err(|e| {
                format!(
                    "selector state {}: {e} (remove it to start over)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(format!(
                "cannot read selector state {}: {e}",
                path.display()
            )),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let s = serde_json::to_string(self).unwrap_or_default();
        write_atomic(path, s.as_bytes())
    }
}

/// The index's control fields of `src`, for reporters.
pub fn control_of(src: &sources::SourcePkg) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("Package".into(), src.name.clone().into());
    m.insert("Version".into(), src.version.clone().into());
    m.insert("Maintainer".into(), src.maintainer.clone().into());
    if !src.uploaders.is_empty() {
        m.insert("Uploaders".into(), src.uploaders.clone().into());
    }
    m
}

/// What the archive looked like for `src`: its version and its
/// dependencies' sources' versions.
pub fn seen_json(idx: &Index, src: &sources::SourcePkg) -> String {
    serde_json::json!({
        "version": src.version,
        "deps": idx.dependency_versions(src),
    })
    .to_string()
}

impl Selector {
    fn index(&self) -> Result<Index, String> {
        let path = self.sources.as_ref().ok_or_else(|| {
            format!(
                "selector {} needs a Sources index: give --sources FILE or `sources` in the configuration",
                self.kind.name()
            )
        })?;
        let mut idx = Index::read(path)?;
        idx.autodep8 = self.autodep8;
        Ok(idx)
    }

    /// The next pick, without committing it. `Ok(None)`: nothing to do.
    pub fn next(&self, dry_run: bool) -> Result<Option<Pick>, String> {
        match &self.kind {
            Kind::RoundRobin => {
                let idx = self.index()?;
                let state = State::load(&self.state)?;
                Ok(round_robin(&idx, state.last.as_deref()))
            }
            Kind::ChangedFirst => {
                let idx = self.index()?;
                let state = State::load(&self.state)?;
                let hist = crate::history::History::open(&self.history)?;
                let last = hist.last_seen()?;
                Ok(changed::pick(&idx, &last, state.picks, self.fair_every))
            }
            Kind::Program(p) => self.program(p, dry_run),
        }
    }

    /// Records that `pick`'s result is stored.
    pub fn commit(&self, pick: &Pick) -> Result<(), String> {
        match self.kind {
            Kind::Program(_) => Ok(()),
            Kind::RoundRobin | Kind::ChangedFirst => {
                let mut state = State::load(&self.state)?;
                state.last = Some(pick.request.source.clone());
                state.picks += 1;
                state.save(&self.state)
            }
        }
    }

    fn program(&self, prog: &str, dry_run: bool) -> Result<Option<Pick>, String> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(prog)
            .env("ADT_RESULTS", &self.results)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if dry_run {
            cmd.env("ADT_SELECT_DRY_RUN", "1");
        }
        if let Some(s) = &self.sources {
            cmd.env("ADT_SOURCES", s);
        }
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run selector program {prog:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("selector program {prog:?} failed: {}", out.status));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
            return Ok(None);
        };
        let request = Request::parse(line, &format!("selector program {prog:?}"))?;
        // The index, when there is one, still tells reporters who maintains it.
        let (control, seen) = match self.sources.as_ref().map(|p| Index::read(p)) {
            Some(Ok(idx)) => match idx.sources.get(&request.source) {
                Some(s) => (control_of(s), Some(seen_json(&idx, s))),
                None => Default::default(),
            },
            _ => Default::default(),
        };
        Ok(Some(Pick {
            why: format!("selector program {prog:?} printed {:?}", line.trim()),
            request,
            seen,
            control,
        }))
    }
}

/// The first source with tests after `last` in alphabetical order,
/// wrapping around.
pub fn round_robin(idx: &Index, last: Option<&str>) -> Option<Pick> {
    let total = idx.testable().count();
    let after = |s: &&sources::SourcePkg| last.is_none_or(|l| s.name.as_str() > l);
    let (src, why) = match idx.testable().find(after) {
        Some(s) => {
            let pos = idx.testable().take_while(|t| t.name < s.name).count() + 1;
            let why = match last {
                Some(l) => format!(
                    "round-robin: next after {l} in alphabetical order ({pos} of {total} sources with tests)"
                ),
                None => format!("round-robin: first in alphabetical order (1 of {total} sources with tests)"),
            };
            (s, why)
        }
        None => (
            idx.testable().next()?,
            format!(
                "round-robin: {} was the last of {total} sources with tests; wrapped around to the first",
                last.unwrap_or_default()
            ),
        ),
    };
    Some(Pick {
        request: Request {
            source: src.name.clone(),
            ..Request::default()
        },
        why,
        seen: Some(seen_json(idx, src)),
        control: control_of(src),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_as_autopkgtest_cloud_writes_them() {
        let r = Request::parse(
            r#"hello {"triggers": ["glibc/2.36-9"], "env": ["A=1"], "testname": "smoke", "submit-time": "x"}"#,
            "test",
        )
        .unwrap();
        assert_eq!(r.source, "hello");
        assert_eq!(r.triggers, ["glibc/2.36-9"]);
        assert_eq!(r.env, ["A=1"]);
        assert_eq!(r.testname.as_deref(), Some("smoke"));
        assert_eq!(r.other["submit-time"], "x");
        assert_eq!(Request::parse("  hello  ", "t").unwrap().source, "hello");
        assert!(r.json().contains("\"triggers\":[\"glibc/2.36-9\"]"));
        assert!(!r.json().contains("hello"));
    }

    #[test]
    fn bad_request_lines_say_what_and_where() {
        let e = Request::parse("Hello", "selector program \"q\"").unwrap_err();
        assert!(
            e.starts_with("selector program \"q\": bad request line \"Hello\""),
            "{e}"
        );
        let e = Request::parse("hello [1]", "q").unwrap_err();
        assert!(e.contains("expected a JSON object"), "{e}");
        let e = Request::parse(r#"hello {"env": ["A"]}"#, "q").unwrap_err();
        assert!(e.contains("env entry \"A\" is not K=V"), "{e}");
        let e = Request::parse(r#"hello {"triggers": ["glibc 2.36"]}"#, "q").unwrap_err();
        assert!(
            e.contains("trigger \"glibc 2.36\" is not SRC/VERSION"),
            "{e}"
        );
    }

    #[test]
    fn triggers_become_adt_test_triggers_and_bad_ones_are_named() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            trigger_env(
                &t(&["A=1"]),
                &t(&["glibc/2.36-9", "perl/1:5.36.0-7+deb12u1~rc1"])
            )
            .unwrap(),
            t(&[
                "A=1",
                "ADT_TEST_TRIGGERS=glibc/2.36-9 perl/1:5.36.0-7+deb12u1~rc1"
            ])
        );
        assert_eq!(trigger_env(&t(&["A=1"]), &[]).unwrap(), t(&["A=1"]));
        check_trigger("migration-reference/0").unwrap();
        for (bad, says) in [
            ("glibc", "is not SRC/VERSION"),
            ("Glibc/2.36", "is not a source package name"),
            ("glibc/", "\"\" is not a Debian version"),
            ("glibc/v2", "\"v2\" is not a Debian version"),
            ("glibc/2.36 x", "\"2.36 x\" is not a Debian version"),
            ("glibc/2.36/1", "\"2.36/1\" is not a Debian version"),
            ("../x/1", "is not a source package name"),
        ] {
            let e = check_trigger(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = trigger_env(&t(&["ADT_TEST_TRIGGERS=x/1"]), &t(&["glibc/2.36-9"])).unwrap_err();
        assert!(e.contains("give the triggers one way"), "{e}");
        let r = Request::parse(
            r#"hello {"triggers": ["glibc/2.36-9"], "env": ["ADT_TEST_TRIGGERS=x/1"]}"#,
            "q",
        );
        assert!(r.unwrap_err().contains("give the triggers one way"));
    }

    #[test]
    fn state_is_persisted_and_a_corrupt_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state/selector.json");
        assert_eq!(State::load(&p).unwrap(), State::default());
        let s = State {
            last: Some("hello".into()),
            picks: 3,
        };
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        std::fs::write(&p, "{").unwrap();
        assert!(State::load(&p)
            .unwrap_err()
            .contains(&p.display().to_string()));
    }
}
