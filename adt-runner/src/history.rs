//! The history: an SQLite database of every stored run and every test's
//! verdict, and the classification of each run against the runs before it
//! (PASS, REGRESSION, ALWAYSFAIL, FLAKY, NEUTRAL, TMPFAIL).
//!
//! A run's classification is decided once, when it is recorded, from the
//! state its predecessors left (whether each test ever passed), so reading
//! the history never walks it: the web report and `adt-runner history`
//! stay fast with millions of runs.
//!
//! Not for: where results live on disk (`results`), picking what to test
//! (`select`), presenting anything (`web`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::verdict::{BADPKG, ERROR, FAILED, NO_TESTS, SKIPPED, TESTBED};

/// A classification of a test, or of a whole run (its worst test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    Neutral,
    Pass,
    Flaky,
    Tmpfail,
    AlwaysFail,
    Regression,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Pass,
        Class::Regression,
        Class::AlwaysFail,
        Class::Flaky,
        Class::Neutral,
        Class::Tmpfail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Neutral => "NEUTRAL",
            Class::Pass => "PASS",
            Class::Flaky => "FLAKY",
            Class::Tmpfail => "TMPFAIL",
            Class::AlwaysFail => "ALWAYSFAIL",
            Class::Regression => "REGRESSION",
        }
    }

    pub fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a `summary`: a test and autopkgtest's verdict for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    pub name: String,
    /// PASS, FAIL, SKIP or FLAKY.
    pub result: String,
    /// The rest of the line (`non-zero exit status 1`, `(superficial)`).
    pub detail: String,
}

/// Reads the test lines of an autopkgtest `summary`; other lines (blame,
/// badpkg, testbed failure messages) are not tests and are left out.
pub fn parse_summary(text: &str) -> Vec<TestResult> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.splitn(2, char::is_whitespace);
            let name = words.next()?.to_string();
            let rest = words.next()?.trim_start();
            let (result, detail) = rest.split_once(' ').unwrap_or((rest, ""));
            matches!(result, "PASS" | "FAIL" | "SKIP" | "FLAKY").then(|| TestResult {
                name,
                result: result.to_string(),
                detail: detail.trim().to_string(),
            })
        })
        .collect()
}

/// A run to record (also kept, as JSON, in the loop's pending markers).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NewRun {
    pub source: String,
    pub version: String,
    pub release: String,
    pub arch: String,
    /// `YYYYMMDD_HHMMSS`, UTC: the result directory's stamp.
    pub started: String,
    pub duration: u64,
    pub exitcode: i32,
    /// The result directory, relative to the results root.
    pub result_dir: String,
    /// The request line's JSON (triggers, env, ...), `{}` when none.
    pub request: String,
    /// What the selector saw of the archive when it picked the source
    /// (JSON; `changed-first` compares it with the archive's next state).
    pub seen: Option<String>,
    pub tests: Vec<TestResult>,
}

/// A recorded run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    pub source: String,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub started: String,
    pub duration: u64,
    pub exitcode: i32,
    pub result_dir: String,
    pub class: Class,
}

/// A recorded test result with its classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRow {
    pub name: String,
    pub result: String,
    pub detail: String,
    pub class: Class,
}

/// The open history database.
pub struct History {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    version TEXT NOT NULL,
    release TEXT NOT NULL,
    arch TEXT NOT NULL,
    started TEXT NOT NULL,
    duration INTEGER NOT NULL,
    exitcode INTEGER NOT NULL,
    result_dir TEXT NOT NULL,
    request TEXT NOT NULL,
    seen TEXT,
    class TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_source ON runs(source, id);
CREATE INDEX IF NOT EXISTS runs_by_class ON runs(class, id);
CREATE TABLE IF NOT EXISTS tests (
    run INTEGER NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL,
    class TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS passed (
    source TEXT NOT NULL,
    test TEXT NOT NULL,
    PRIMARY KEY (source, test)
) WITHOUT ROWID;
-- Kept up to date by `record`, so that the index and a package page with
-- millions of runs read a row per source instead of scanning runs.
CREATE TABLE IF NOT EXISTS latest (
    source TEXT PRIMARY KEY,
    run INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    source TEXT NOT NULL,
    class TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (source, class)
) WITHOUT ROWID;
";

/// The name standing for the whole package in `passed` (a run that failed
/// before any test ran, e.g. an erroneous package, is compared with it).
const WHOLE: &str = "*";

fn err(path: &Path) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("history database {}: {e}", path.display())
}

impl History {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<History, String> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let db = Connection::open(path).map_err(err(path))?;
        db.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(err(path))?;
        db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
            .map_err(err(path))?;
        db.execute_batch(SCHEMA).map_err(err(path))?;
        Ok(History { db })
    }

    fn ever_passed(&self, source: &str, test: &str) -> rusqlite::Result<bool> {
        self.db
            .query_row(
                "SELECT 1 FROM passed WHERE source = ?1 AND test = ?2",
                params![source, test],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
    }

    /// Records a run and classifies it; returns its id and class.
    pub fn record(&mut self, run: &NewRun) -> Result<(i64, Class), String> {
        let wrap = |e: rusqlite::Error| format!("cannot record {} in the history: {e}", run.source);
        let tx = self.db.savepoint().map_err(wrap)?;
        let (class, classes) = History::classifier(&tx)(run).map_err(wrap)?;
        tx.execute(
            "INSERT INTO runs (source, version, release, arch, started, duration, exitcode,
                               result_dir, request, seen, class)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run.source,
                run.version,
                run.release,
                run.arch,
                run.started,
                run.duration as i64,
                run.exitcode,
                run.result_dir,
                run.request,
                run.seen,
                class.as_str()
            ],
        )
        .map_err(wrap)?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO latest (source, run) VALUES (?1, ?2)
             ON CONFLICT (source) DO UPDATE SET run = excluded.run",
            params![run.source, id],
        )
        .map_err(wrap)?;
        tx.execute(
            "INSERT INTO counts (source, class, n) VALUES (?1, ?2, 1)
             ON CONFLICT (source, class) DO UPDATE SET n = n + 1",
            params![run.source, class.as_str()],
        )
        .map_err(wrap)?;
        for (seq, (t, c)) in run.tests.iter().zip(&classes).enumerate() {
            tx.execute(
                "INSERT INTO tests (run, seq, name, result, detail, class) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, seq as i64, t.name, t.result, t.detail, c.as_str()],
            )
            .map_err(wrap)?;
            if *c == Class::Pass {
                tx.execute(
                    "INSERT OR IGNORE INTO passed (source, test) VALUES (?1, ?2), (?1, ?3)",
                    params![run.source, t.name, WHOLE],
                )
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok((id, class))
    }

    /// The classifier over a connection (a transaction while recording).
    #[allow(clippy::type_complexity)]
    fn classifier(
        db: &Connection,
    ) -> impl Fn(&NewRun) -> rusqlite::Result<(Class, Vec<Class>)> + '_ {
        move |run| {
            let passed = |test: &str| -> rusqlite::Result<bool> {
                db.query_row(
                    "SELECT 1 FROM passed WHERE source = ?1 AND test = ?2",
                    params![run.source, test],
                    |_| Ok(()),
                )
                .optional()
                .map(|o| o.is_some())
            };
            let mut tests = Vec::new();
            for t in &run.tests {
                tests.push(classify_test(run.exitcode, t, || passed(&t.name))?);
            }
            let class = classify_run(run.exitcode, &tests, || passed(WHOLE))?;
            Ok((class, tests))
        }
    }

    /// The classification a run with these facts would get now, without
    /// recording it.
    pub fn classify(&self, run: &NewRun) -> Result<Class, String> {
        History::classifier(&self.db)(run)
            .map(|(c, _)| c)
            .map_err(|e| format!("history: {e}"))
    }

    /// Whether `test` of `source` has ever passed.
    pub fn has_passed(&self, source: &str, test: &str) -> Result<bool, String> {
        self.ever_passed(source, test)
            .map_err(|e| format!("history: {e}"))
    }

    fn run_from_row(row: &rusqlite::Row) -> rusqlite::Result<Run> {
        let class: String = row.get(9)?;
        Ok(Run {
            id: row.get(0)?,
            source: row.get(1)?,
            version: row.get(2)?,
            release: row.get(3)?,
            arch: row.get(4)?,
            started: row.get(5)?,
            duration: row.get::<_, i64>(6)? as u64,
            exitcode: row.get(7)?,
            result_dir: row.get(8)?,
            class: Class::parse(&class).unwrap_or(Class::Tmpfail),
        })
    }

    const RUN_COLUMNS: &'static str =
        "runs.id, runs.source, version, release, arch, started, duration, exitcode, result_dir, runs.class";

    /// The newest `limit` runs of `source`, newest first.
    pub fn runs(&self, source: &str, limit: usize) -> Result<Vec<Run>, String> {
        let sql = format!(
            "SELECT {} FROM runs WHERE source = ?1 ORDER BY id DESC LIMIT ?2",
            Self::RUN_COLUMNS
        );
        self.query_runs(&sql, params![source, limit as i64])
    }

    /// The run stored in `result_dir` (relative to the results root).
    pub fn run_by_dir(&self, result_dir: &str) -> Result<Option<Run>, String> {
        let sql = format!(
            "SELECT {} FROM runs WHERE result_dir = ?1 ORDER BY id DESC LIMIT 1",
            Self::RUN_COLUMNS
        );
        Ok(self
            .query_runs(&sql, params![result_dir])?
            .into_iter()
            .next())
    }

    /// How many runs of `source` there are, per class.
    pub fn counts(&self, source: &str) -> Result<Vec<(Class, u64)>, String> {
        let mut st = self
            .db
            .prepare_cached("SELECT class, n FROM counts WHERE source = ?1")
            .map_err(|e| format!("history: {e}"))?;
        let rows = st
            .query_map(params![source], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| format!("history: {e}"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, n)| Class::parse(&c).map(|c| (c, n as u64)))
            .collect())
    }

    /// The latest run of every source, by source name.
    pub fn latest(&self) -> Result<Vec<Run>, String> {
        let sql = format!(
            "SELECT {} FROM latest JOIN runs ON runs.id = latest.run ORDER BY latest.source",
            Self::RUN_COLUMNS
        );
        self.query_runs(&sql, [])
    }

    /// The latest run of every source whose latest run is a regression.
    pub fn regressions(&self) -> Result<Vec<Run>, String> {
        Ok(self
            .latest()?
            .into_iter()
            .filter(|r| r.class == Class::Regression)
            .collect())
    }

    /// The tests of run `id`.
    pub fn tests(&self, id: i64) -> Result<Vec<TestRow>, String> {
        let mut st = self
            .db
            .prepare_cached(
                "SELECT name, result, detail, class FROM tests WHERE run = ?1 ORDER BY seq",
            )
            .map_err(|e| format!("history: {e}"))?;
        st.query_map(params![id], |r| {
            let class: String = r.get(3)?;
            Ok(TestRow {
                name: r.get(0)?,
                result: r.get(1)?,
                detail: r.get(2)?,
                class: Class::parse(&class).unwrap_or(Class::Tmpfail),
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| format!("history: {e}"))
    }

    /// For every source: when it was last run and what the selector saw
    /// then (the `seen` JSON), for `changed-first`.
    pub fn last_seen(&self) -> Result<HashMap<String, (String, Option<String>)>, String> {
        let mut st = self
            .db
            .prepare(
                "SELECT runs.source, started, seen FROM latest JOIN runs ON runs.id = latest.run",
            )
            .map_err(|e| format!("history: {e}"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?),
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<HashMap<_, _>>>())
            .map_err(|e| format!("history: {e}"))?;
        Ok(rows)
    }

    fn query_runs<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<Run>, String> {
        let mut st = self
            .db
            .prepare_cached(sql)
            .map_err(|e| format!("history: {e}"))?;
        st.query_map(p, Self::run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| format!("history: {e}"))
    }

    /// Runs `f` in one transaction (bulk loading, e.g. benchmarks).
    pub fn batch<T>(
        &mut self,
        f: impl FnOnce(&mut History) -> Result<T, String>,
    ) -> Result<T, String> {
        self.db
            .execute_batch("BEGIN")
            .map_err(|e| format!("history: {e}"))?;
        match f(self) {
            Ok(v) => {
                self.db
                    .execute_batch("COMMIT")
                    .map_err(|e| format!("history: {e}"))?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.db.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// A run whose testbed or infrastructure failed tells nothing about the
/// package: autopkgtest's 16 and 20, and any code autopkgtest does not
/// define (the runner crashed, 101, or was killed by a signal, 128+N).
pub fn is_tmpfail(exitcode: i32) -> bool {
    let package_codes = [
        0,
        SKIPPED,
        FAILED,
        FAILED | SKIPPED,
        NO_TESTS,
        BADPKG,
        BADPKG | SKIPPED,
    ];
    exitcode == TESTBED || exitcode == ERROR || !package_codes.contains(&exitcode)
}

fn classify_test(
    exitcode: i32,
    t: &TestResult,
    ever_passed: impl FnOnce() -> rusqlite::Result<bool>,
) -> rusqlite::Result<Class> {
    if is_tmpfail(exitcode) {
        return Ok(Class::Tmpfail);
    }
    Ok(match (t.result.as_str(), t.detail.as_str()) {
        ("PASS", "(superficial)") => Class::Neutral,
        ("PASS", _) => Class::Pass,
        ("FLAKY", _) => Class::Flaky,
        ("FAIL", _) if ever_passed()? => Class::Regression,
        ("FAIL", _) => Class::AlwaysFail,
        _ => Class::Neutral,
    })
}

fn classify_run(
    exitcode: i32,
    tests: &[Class],
    ever_passed: impl FnOnce() -> rusqlite::Result<bool>,
) -> rusqlite::Result<Class> {
    if is_tmpfail(exitcode) {
        return Ok(Class::Tmpfail);
    }
    if let Some(worst) = tests.iter().copied().max() {
        // A package whose tests all passed but whose dependencies of one
        // test could not be installed is not a pass.
        if exitcode & BADPKG == BADPKG && worst < Class::AlwaysFail {
            return Ok(if ever_passed()? {
                Class::Regression
            } else {
                Class::AlwaysFail
            });
        }
        return Ok(worst);
    }
    Ok(match exitcode {
        NO_TESTS | 0 | 2 => Class::Neutral,
        _ if ever_passed()? => Class::Regression,
        _ => Class::AlwaysFail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_become_tests_and_other_lines_are_ignored() {
        let s = "smoke                PASS\n\
                 a-very-long-test-name-indeed FAIL non-zero exit status 1\n\
                 light                PASS (superficial)\n\
                 blame: foo\n\
                 badpkg: cannot install\n\
                 testbed failure: ssh went away\n\
                 *                    SKIP no tests in this package\n";
        let t = parse_summary(s);
        let got: Vec<_> = t
            .iter()
            .map(|t| format!("{}|{}|{}", t.name, t.result, t.detail))
            .collect();
        assert_eq!(
            got,
            [
                "smoke|PASS|",
                "a-very-long-test-name-indeed|FAIL|non-zero exit status 1",
                "light|PASS|(superficial)",
                "*|SKIP|no tests in this package",
            ]
        );
    }

    fn run(exitcode: i32, tests: &[(&str, &str)]) -> NewRun {
        NewRun {
            source: "hello".into(),
            version: "1".into(),
            exitcode,
            tests: tests
                .iter()
                .map(|(n, r)| TestResult {
                    name: n.to_string(),
                    result: r.to_string(),
                    detail: String::new(),
                })
                .collect(),
            ..NewRun::default()
        }
    }

    #[test]
    fn a_badpkg_run_after_a_pass_is_a_regression_before_one_always_fails() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::open(&d.path().join("h.sqlite")).unwrap();
        assert_eq!(h.record(&run(12, &[])).unwrap().1, Class::AlwaysFail);
        assert_eq!(h.record(&run(0, &[("t", "PASS")])).unwrap().1, Class::Pass);
        assert_eq!(h.record(&run(12, &[])).unwrap().1, Class::Regression);
        assert_eq!(
            h.record(&run(12, &[("t", "PASS")])).unwrap().1,
            Class::Regression
        );
    }

    #[test]
    fn the_worst_test_classifies_the_run_and_flaky_is_not_a_failure() {
        let d = tempfile::tempdir().unwrap();
        let mut h = History::open(&d.path().join("h.sqlite")).unwrap();
        h.record(&run(0, &[("a", "PASS"), ("b", "PASS")])).unwrap();
        let (id, c) = h
            .record(&run(4, &[("a", "PASS"), ("b", "FAIL"), ("c", "FLAKY")]))
            .unwrap();
        assert_eq!(c, Class::Regression);
        let classes: Vec<_> = h.tests(id).unwrap().iter().map(|t| t.class).collect();
        assert_eq!(classes, [Class::Pass, Class::Regression, Class::Flaky]);
        assert_eq!(
            h.record(&run(2, &[("c", "FLAKY"), ("d", "SKIP")]))
                .unwrap()
                .1,
            Class::Flaky
        );
        assert_eq!(h.record(&run(8, &[])).unwrap().1, Class::Neutral);
    }
}
