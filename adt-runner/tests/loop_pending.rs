//! A result the loop stored but did not get to record and report (the
//! service crashed or was killed in between) is finished by the next
//! iteration: recorded once, reported, its marker removed; a marker
//! whose result is gone is set aside, not retried for ever. The marker is
//! written before the result is renamed into the tree: a crash in between
//! leaves a prepared result that the next iteration stores.

mod common;

use std::path::{Path, PathBuf};

use adt_runner::history::{parse_summary, Class, History, NewRun};
use adt_runner::loopconfig::Config;
use adt_runner::report::Reporters;
use adt_runner::results::Store;
use adt_runner::select::Kind;
use adt_runner::service::{finish_pending, Pending};
use common::output_dir;

const SUMMARY: &str = "smoke                FAIL non-zero exit status 1\n";

fn config(results: &Path, reported: &Path) -> Config {
    Config {
        path: None,
        results: results.to_path_buf(),
        selector: Kind::RoundRobin,
        sources: None,
        fair_every: 4,
        testbed: Some("ssh:localhost".into()),
        identity: None,
        login: None,
        revert_command: None,
        teardown_command: None,
        capabilities: vec![],
        run_args: vec![],
        release: "bookworm".into(),
        arch: "amd64".into(),
        idle_seconds: 1,
        reporters: Reporters {
            programs: vec![format!(
                "r() {{ echo \"$ADT_SOURCE $ADT_VERDICT\" >> {}; }}; r",
                reported.display()
            )],
            mail: None,
        },
        web_out: None,
        results_url: None,
    }
}

/// Stores a result of `source` as the loop does and leaves the marker a
/// crash right after the store would leave; with `committed` false, the
/// crash came before the rename that stores the prepared result.
fn interrupted(cfg: &Config, work: &Path, source: &str, committed: bool) -> (PathBuf, Pending) {
    let out = work.join(source);
    output_dir(&out, source, "1.0-1", 4, SUMMARY, "log\n");
    let prepared = Store {
        root: cfg.results.clone(),
        release: cfg.release.clone(),
        arch: cfg.arch.clone(),
    }
    .prepare(source, &out, "{}")
    .unwrap();
    let stored = prepared.stored.clone();
    let p = Pending {
        dir: stored.dir.clone(),
        from: Some(prepared.tmp.clone()),
        run: NewRun {
            source: source.into(),
            version: "1.0-1".into(),
            release: cfg.release.clone(),
            arch: cfg.arch.clone(),
            started: stored.stamp.clone(),
            duration: 3,
            exitcode: 4,
            result_dir: stored.rel.clone(),
            request: "{}".into(),
            seen: None,
            tests: parse_summary(SUMMARY),
        },
    };
    let dir = cfg.results.join("spool/pending");
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join(format!("{}.{source}.json", stored.stamp));
    std::fs::write(&marker, serde_json::to_vec(&p).unwrap()).unwrap();
    if committed {
        adt_runner::results::commit(&prepared.tmp, &stored.dir).unwrap();
    }
    (marker, p)
}

fn stored_and_interrupted(cfg: &Config, work: &Path, source: &str) -> (PathBuf, Pending) {
    interrupted(cfg, work, source, true)
}

#[test]
fn a_result_stored_before_a_crash_is_recorded_once_and_reported() {
    let d = tempfile::tempdir().unwrap();
    let reported = d.path().join("reported");
    let cfg = config(&d.path().join("results"), &reported);
    let (marker_a, _) = stored_and_interrupted(&cfg, d.path(), "alpha");
    // beta crashed after its record, before its report.
    let (marker_b, b) = stored_and_interrupted(&cfg, d.path(), "beta");
    let mut h = History::open(&cfg.history_path()).unwrap();
    h.record(&b.run).unwrap();
    drop(h);

    finish_pending(&cfg).unwrap();

    let h = History::open(&cfg.history_path()).unwrap();
    for src in ["alpha", "beta"] {
        let runs = h.runs(src, 10).unwrap();
        assert_eq!(runs.len(), 1, "{src} recorded exactly once: {runs:?}");
        assert_eq!(runs[0].class, Class::AlwaysFail);
    }
    let text = std::fs::read_to_string(&reported).unwrap();
    assert_eq!(
        text, "alpha ALWAYSFAIL (exit code 4)\nbeta ALWAYSFAIL (exit code 4)\n",
        "each reported once, oldest first"
    );
    assert!(!marker_a.exists() && !marker_b.exists());
    // Nothing is done twice.
    finish_pending(&cfg).unwrap();
    assert_eq!(std::fs::read_to_string(&reported).unwrap(), text);
}

#[test]
fn a_marker_whose_result_is_gone_is_set_aside() {
    let d = tempfile::tempdir().unwrap();
    let reported = d.path().join("reported");
    let cfg = config(&d.path().join("results"), &reported);
    let (marker, p) = stored_and_interrupted(&cfg, d.path(), "gamma");
    std::fs::remove_dir_all(&p.dir).unwrap();
    let garbled = marker.with_file_name("00000000_000000.garbled.json");
    std::fs::write(&garbled, b"{not json").unwrap();
    finish_pending(&cfg).unwrap();
    assert!(!marker.exists() && !garbled.exists());
    assert!(marker.with_extension("json.bad").exists());
    assert!(garbled.with_extension("json.bad").exists());
    assert!(!reported.exists(), "nothing to report");
}

#[test]
fn a_result_prepared_but_not_stored_before_a_crash_is_stored_and_recorded() {
    let d = tempfile::tempdir().unwrap();
    let reported = d.path().join("reported");
    let cfg = config(&d.path().join("results"), &reported);
    let (marker, p) = interrupted(&cfg, d.path(), "delta", false);
    let from = p.from.clone().unwrap();
    assert!(!p.dir.exists(), "not stored yet");
    assert!(from.join("result.tar").exists(), "prepared");

    finish_pending(&cfg).unwrap();

    assert!(
        p.dir.join("result.tar").exists(),
        "stored where the marker said"
    );
    assert!(!from.exists(), "the prepared copy became the result");
    let loaded = adt_runner::results::load(&p.dir).unwrap();
    assert_eq!(loaded.exitcode(), Some(4));
    let h = History::open(&cfg.history_path()).unwrap();
    let runs = h.runs("delta", 10).unwrap();
    assert_eq!(runs.len(), 1, "recorded once: {runs:?}");
    assert_eq!(runs[0].result_dir, p.run.result_dir);
    assert_eq!(
        std::fs::read_to_string(&reported).unwrap(),
        "delta ALWAYSFAIL (exit code 4)\n"
    );
    assert!(!marker.exists());
}

#[test]
fn a_prepared_result_that_cannot_be_stored_keeps_its_marker() {
    let d = tempfile::tempdir().unwrap();
    let reported = d.path().join("reported");
    let cfg = config(&d.path().join("results"), &reported);
    let (marker, p) = interrupted(&cfg, d.path(), "epsilon", false);
    // Something already holds the result's name: storing must fail, and
    // the prepared result and its marker must stay for another try.
    std::fs::create_dir_all(p.dir.join("in-the-way")).unwrap();
    let e = finish_pending(&cfg).unwrap_err();
    assert!(e.contains(&p.dir.display().to_string()), "{e}");
    assert!(marker.exists(), "kept for another try");
    assert!(p.from.unwrap().join("result.tar").exists(), "nothing lost");
    assert!(!reported.exists(), "nothing reported");
}
