//! The history's classification over sequences of runs, as the issue
//! states them: PASS,FAIL is a regression; FAIL,FAIL always fails;
//! PASS,TMPFAIL is not a regression (a testbed failure says nothing about
//! the package), and a FAIL after it still is.

use adt_runner::history::{parse_summary, Class, History, NewRun};

/// One run of `src` as `adt-runner run` would leave it: an exit code and
/// a summary in autopkgtest's words.
fn run(src: &str, exitcode: i32, summary: &str) -> NewRun {
    NewRun {
        source: src.into(),
        version: "1.0-1".into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        started: "20261122_080000".into(),
        exitcode,
        request: "{}".into(),
        tests: parse_summary(summary),
        ..NewRun::default()
    }
}

const PASS: (i32, &str) = (0, "smoke                PASS\n");
const FAIL: (i32, &str) = (4, "smoke                FAIL non-zero exit status 1\n");
const TMPFAIL: (i32, &str) = (16, "testbed failure: ssh connection lost\n");
const ERROR: (i32, &str) = (20, "unexpected error: out of disk\n");
const SKIP: (i32, &str) = (
    8,
    "smoke                SKIP exit status 77 and marked as skippable\n",
);
const FLAKY: (i32, &str) = (2, "smoke                FLAKY non-zero exit status 1\n");

fn classes(seq: &[(i32, &str)]) -> Vec<Class> {
    let d = tempfile::tempdir().unwrap();
    let mut h = History::open(&d.path().join("history.sqlite")).unwrap();
    seq.iter()
        .map(|(code, summary)| h.record(&run("hello", *code, summary)).unwrap().1)
        .collect()
}

#[test]
fn pass_then_fail_is_a_regression() {
    assert_eq!(classes(&[PASS, FAIL]), [Class::Pass, Class::Regression]);
}

#[test]
fn fail_then_fail_always_fails() {
    assert_eq!(
        classes(&[FAIL, FAIL]),
        [Class::AlwaysFail, Class::AlwaysFail]
    );
}

#[test]
fn pass_then_tmpfail_is_not_a_regression() {
    assert_eq!(classes(&[PASS, TMPFAIL]), [Class::Pass, Class::Tmpfail]);
    assert_eq!(classes(&[PASS, ERROR]), [Class::Pass, Class::Tmpfail]);
}

#[test]
fn a_crashed_or_killed_runner_is_a_tmpfail_not_a_regression() {
    // The summary may hold what ran before the crash; a code autopkgtest
    // does not define says the run, not the package, went wrong.
    let crashed = (101, "smoke                FAIL non-zero exit status 1\n");
    let killed = (137, "");
    assert_eq!(
        classes(&[PASS, crashed, killed, FAIL]),
        [
            Class::Pass,
            Class::Tmpfail,
            Class::Tmpfail,
            Class::Regression
        ]
    );
    for package_code in [0, 2, 4, 6, 8, 12, 14] {
        assert!(
            !adt_runner::history::is_tmpfail(package_code),
            "{package_code}"
        );
    }
}

#[test]
fn a_tmpfail_neither_hides_nor_makes_a_pass() {
    assert_eq!(
        classes(&[PASS, TMPFAIL, FAIL]),
        [Class::Pass, Class::Tmpfail, Class::Regression]
    );
    assert_eq!(
        classes(&[TMPFAIL, FAIL]),
        [Class::Tmpfail, Class::AlwaysFail],
        "a testbed failure is not a pass to regress from"
    );
}

#[test]
fn skips_are_neutral_and_flaky_failures_are_flaky() {
    assert_eq!(
        classes(&[PASS, SKIP, FLAKY, FAIL]),
        [Class::Pass, Class::Neutral, Class::Flaky, Class::Regression]
    );
}

#[test]
fn sources_and_tests_are_classified_separately() {
    let d = tempfile::tempdir().unwrap();
    let mut h = History::open(&d.path().join("history.sqlite")).unwrap();
    h.record(&run("a", PASS.0, PASS.1)).unwrap();
    assert_eq!(
        h.record(&run("b", FAIL.0, FAIL.1)).unwrap().1,
        Class::AlwaysFail
    );
    let two = "smoke                PASS\nother                FAIL non-zero exit status 2\n";
    assert_eq!(
        h.record(&run("a", 4, two)).unwrap().1,
        Class::AlwaysFail,
        "a new test that never passed is not a regression"
    );
    let latest = h.latest().unwrap();
    let got: Vec<_> = latest
        .iter()
        .map(|r| (r.source.as_str(), r.class))
        .collect();
    assert_eq!(got, [("a", Class::AlwaysFail), ("b", Class::AlwaysFail)]);
}

#[test]
fn the_history_survives_reopening() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("history.sqlite");
    History::open(&path)
        .unwrap()
        .record(&run("a", PASS.0, PASS.1))
        .unwrap();
    let mut h = History::open(&path).unwrap();
    assert_eq!(
        h.record(&run("a", FAIL.0, FAIL.1)).unwrap().1,
        Class::Regression
    );
    assert_eq!(h.runs("a", 10).unwrap().len(), 2);
}
