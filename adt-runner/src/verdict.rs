//! Verdicts and exit codes, decided in autopkgtest's order and written in
//! its words: PASS, PASS (superficial), FAIL <reason>, FLAKY <reason>,
//! SKIP <reason>; exit codes 0, 2, 4, 6, 8, 12, 14, 16, 20.
//!
//! Not for: running anything; callers give the facts (exit status,
//! timeout, first stderr line).

use std::fmt;

use crate::dep8::Test;

/// The result of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    PassSuperficial,
    Fail(String),
    Flaky(String),
    Skip(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => write!(f, "PASS"),
            Verdict::PassSuperficial => write!(f, "PASS (superficial)"),
            Verdict::Fail(r) => write!(f, "FAIL {r}"),
            Verdict::Flaky(r) => write!(f, "FLAKY {r}"),
            Verdict::Skip(r) => write!(f, "SKIP {r}"),
        }
    }
}

/// What happened when the test ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub exit_code: i32,
    pub timed_out: bool,
    /// First line of stderr, `None` when stderr was empty.
    pub stderr_first_line: Option<String>,
}

fn failed(test: &Test, reason: String) -> Verdict {
    if test.has("flaky") {
        Verdict::Flaky(reason)
    } else {
        Verdict::Fail(reason)
    }
}

/// How tests with `needs-internet` are run (autopkgtest's
/// `--needs-internet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum NeedsInternet {
    /// As any other test (the default).
    #[default]
    Run,
    /// Run; a failure is a skip, since the network is not guaranteed.
    Try,
    /// Not run: the testbed lacks `has_internet`.
    Skip,
}

/// autopkgtest's decision: timeout, then 77 with skippable, then a
/// non-zero status (a skip for needs-internet under `--needs-internet
/// try`), then stderr without allow-stderr, else pass.
pub fn decide(test: &Test, facts: &Facts, internet: NeedsInternet) -> Verdict {
    if facts.timed_out {
        return failed(test, "timed out".into());
    }
    if facts.exit_code == 77 && test.has("skippable") {
        return Verdict::Skip("exit status 77 and marked as skippable".into());
    }
    if facts.exit_code != 0 {
        if test.has("needs-internet") && internet == NeedsInternet::Try {
            return Verdict::Skip(
                "Failed, but test has needs-internet and that's not guaranteed".into(),
            );
        }
        return failed(test, format!("non-zero exit status {}", facts.exit_code));
    }
    if let (Some(line), false) = (&facts.stderr_first_line, test.has("allow-stderr")) {
        return failed(test, format!("stderr: {line}"));
    }
    if test.has("superficial") {
        Verdict::PassSuperficial
    } else {
        Verdict::Pass
    }
}

/// The exit status being accumulated over a run, as autopkgtest's
/// `errorcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus {
    pub code: i32,
    any_positive: bool,
}

/// At least one test was skipped (or failed while flaky).
pub const SKIPPED: i32 = 2;
/// At least one test failed.
pub const FAILED: i32 = 4;
/// No tests, or every test skipped.
pub const NO_TESTS: i32 = 8;
/// Erroneous package.
pub const BADPKG: i32 = 12;
/// Testbed failure.
pub const TESTBED: i32 = 16;
/// Any other error.
pub const ERROR: i32 = 20;

impl ExitStatus {
    /// Folds one test's verdict in.
    pub fn record(&mut self, v: &Verdict) {
        match v {
            Verdict::Pass => self.any_positive = true,
            Verdict::PassSuperficial => {}
            Verdict::Skip(_) | Verdict::Flaky(_) => self.code |= SKIPPED,
            Verdict::Fail(_) => self.code |= FAILED,
        }
    }

    /// A test whose dependencies could not be installed (`FAIL badpkg`).
    pub fn record_badpkg(&mut self) {
        self.code |= BADPKG;
    }

    /// Tests skipped while parsing.
    pub fn record_parse_skips(&mut self) {
        self.code |= SKIPPED;
    }

    /// End of the tests: only skips and superficial passes count as none.
    pub fn finish(&mut self) {
        if matches!(self.code, 0 | SKIPPED) && !self.any_positive {
            self.code = NO_TESTS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn test(restrictions: &[&str]) -> Test {
        Test {
            name: "t".into(),
            path: Some("debian/tests/t".into()),
            command: None,
            restrictions: restrictions.iter().map(|s| s.to_string()).collect(),
            features: BTreeSet::new(),
            classes: vec![],
            depends: vec![],
            synth_depends: vec![],
        }
    }

    fn facts(code: i32, timed_out: bool, stderr: Option<&str>) -> Facts {
        Facts {
            exit_code: code,
            timed_out,
            stderr_first_line: stderr.map(String::from),
        }
    }

    #[test]
    fn verdicts_follow_autopkgtest_order_and_words() {
        let cases: &[(&[&str], Facts, &str)] = &[
            (&[], facts(0, false, None), "PASS"),
            (
                &["superficial"],
                facts(0, false, None),
                "PASS (superficial)",
            ),
            (&[], facts(1, false, None), "FAIL non-zero exit status 1"),
            (&[], facts(0, false, Some("oops")), "FAIL stderr: oops"),
            (&["allow-stderr"], facts(0, false, Some("oops")), "PASS"),
            (
                &["allow-stderr"],
                facts(2, false, Some("oops")),
                "FAIL non-zero exit status 2",
            ),
            (&[], facts(77, false, None), "FAIL non-zero exit status 77"),
            (
                &["skippable"],
                facts(77, false, Some("x")),
                "SKIP exit status 77 and marked as skippable",
            ),
            (&["skippable"], facts(0, false, Some("x")), "FAIL stderr: x"),
            (
                &["flaky"],
                facts(1, false, None),
                "FLAKY non-zero exit status 1",
            ),
            (&["flaky"], facts(0, false, None), "PASS"),
            (
                &["skippable", "flaky"],
                facts(124, true, None),
                "FLAKY timed out",
            ),
            (&[], facts(124, true, Some("x")), "FAIL timed out"),
            (
                &["superficial"],
                facts(3, false, None),
                "FAIL non-zero exit status 3",
            ),
        ];
        for (r, f, want) in cases {
            assert_eq!(
                decide(&test(r), f, NeedsInternet::Run).to_string(),
                *want,
                "{r:?} {f:?}"
            );
        }
    }

    #[test]
    fn needs_internet_try_turns_only_a_non_zero_status_into_a_skip() {
        let net = test(&["needs-internet"]);
        let skip = "SKIP Failed, but test has needs-internet and that's not guaranteed";
        let d = |t: &Test, f: Facts, n| decide(t, &f, n).to_string();
        assert_eq!(d(&net, facts(1, false, None), NeedsInternet::Try), skip);
        assert_eq!(
            d(&net, facts(1, false, None), NeedsInternet::Run),
            "FAIL non-zero exit status 1"
        );
        // a timeout and stderr are failures still; other tests are as ever
        assert_eq!(
            d(&net, facts(124, true, None), NeedsInternet::Try),
            "FAIL timed out"
        );
        assert_eq!(
            d(&net, facts(0, false, Some("x")), NeedsInternet::Try),
            "FAIL stderr: x"
        );
        assert_eq!(
            d(&test(&[]), facts(1, false, None), NeedsInternet::Try),
            "FAIL non-zero exit status 1"
        );
    }

    fn status(verdicts: &[Verdict]) -> i32 {
        let mut s = ExitStatus::default();
        verdicts.iter().for_each(|v| s.record(v));
        s.finish();
        s.code
    }

    #[test]
    fn exit_codes_follow_autopkgtest() {
        use Verdict::*;
        assert_eq!(status(&[Pass]), 0);
        assert_eq!(status(&[Pass, Skip("x".into())]), 2);
        assert_eq!(status(&[Pass, Flaky("x".into())]), 2);
        assert_eq!(status(&[Pass, Fail("x".into())]), 4);
        assert_eq!(status(&[Skip("x".into()), Fail("x".into())]), 6);
        assert_eq!(status(&[]), 8);
        assert_eq!(status(&[Skip("x".into())]), 8);
        assert_eq!(status(&[PassSuperficial]), 8);
        assert_eq!(status(&[PassSuperficial, Fail("x".into())]), 4);
    }

    #[test]
    fn uninstallable_dependencies_give_12_or_14() {
        let mut s = ExitStatus::default();
        s.record(&Verdict::Pass);
        s.record_badpkg();
        s.finish();
        assert_eq!(s.code, 12);
        s.record(&Verdict::Skip("x".into()));
        assert_eq!(s.code, 14);
    }
}
