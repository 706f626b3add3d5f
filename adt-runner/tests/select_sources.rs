//! Selection over the real bookworm main Sources index (downloaded with
//! apt on first use into target/test-data/, see tests/data/fetch-sources):
//! round-robin order, wrap-around and a cursor that survives a restart;
//! changed-first after a version bump and after a dependency bump.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use adt_runner::history::{History, NewRun};
use adt_runner::select::sources::{compare_versions, Index};
use adt_runner::select::{seen_json, Kind, Selector, State};

fn selector(kind: Kind, sources: &Path, dir: &Path) -> Selector {
    Selector {
        kind,
        sources: Some(sources.to_path_buf()),
        state: dir.join("state/selector.json"),
        results: dir.to_path_buf(),
        autodep8: false,
        fair_every: 0,
        history: dir.join("history.sqlite"),
    }
}

/// Source names whose Testsuite lists `autopkgtest` (their own
/// debian/tests/control) or, with `autodep8`, an `autopkgtest-pkg-*`, in
/// the highest version the index lists, read independently of the parser
/// under test: stanzas split on blank lines, fields matched by prefix.
fn testable_names(text: &str, autodep8: bool) -> BTreeSet<String> {
    let mut newest: std::collections::BTreeMap<&str, (&str, bool)> = Default::default();
    for stanza in text.split("\n\n") {
        let field = |f: &str| stanza.lines().find_map(|l| l.strip_prefix(f));
        let (Some(name), Some(version)) = (field("Package: "), field("Version: ")) else {
            continue;
        };
        let tested = field("Testsuite:").is_some_and(|v| {
            v.split(',').any(|t| {
                t.trim() == "autopkgtest" || (autodep8 && t.trim().starts_with("autopkgtest-pkg-"))
            })
        });
        let e = newest.entry(name).or_insert((version, tested));
        if compare_versions(version, e.0) == std::cmp::Ordering::Greater {
            *e = (version, tested);
        }
    }
    newest
        .into_iter()
        .filter(|(_, (_, tested))| *tested)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn round_robin_goes_alphabetically_wraps_around_and_survives_a_restart() {
    let path = common::bookworm_sources();
    let text = std::fs::read_to_string(&path).unwrap();
    let names: Vec<String> = testable_names(&text, false).into_iter().collect();
    let idx = Index::read(&path).unwrap();
    assert_eq!(idx.stanzas, text.matches("\nPackage: ").count() + 1);
    assert_eq!(idx.testable().count(), names.len());
    assert!(
        names.len() > 5_000,
        "a real archive has thousands: {}",
        names.len()
    );

    let d = tempfile::tempdir().unwrap();
    let sel = selector(Kind::RoundRobin, &path, d.path());
    for expected in &names[..3] {
        let p = sel.next(false).unwrap().unwrap();
        assert_eq!(&p.request.source, expected, "{}", p.why);
        assert_eq!(
            sel.next(false).unwrap().unwrap().request.source,
            *expected,
            "not committed: same pick"
        );
        sel.commit(&p).unwrap();
    }
    // A new process (the service restarted) goes on where the last stopped.
    let restarted = selector(Kind::RoundRobin, &path, d.path());
    let p = restarted.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, names[3]);
    assert!(
        p.why.contains(&format!("next after {}", names[2])),
        "{}",
        p.why
    );

    State {
        last: Some(names.last().unwrap().clone()),
        picks: 0,
    }
    .save(&d.path().join("state/selector.json"))
    .unwrap();
    let p = restarted.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, names[0], "wraps around");
    assert!(p.why.contains("wrapped around"), "{}", p.why);
}

#[test]
fn round_robin_takes_autodep8_sources_where_autodep8_generates_their_tests() {
    let path = common::bookworm_sources();
    let text = std::fs::read_to_string(&path).unwrap();
    let own = testable_names(&text, false);
    let all = testable_names(&text, true);
    let generated: Vec<&String> = all.difference(&own).collect();
    assert!(
        generated.len() > 1_000,
        "bookworm has thousands of sources tested only through autodep8: {}",
        generated.len()
    );
    let mut idx = Index::read(&path).unwrap();
    idx.autodep8 = true;
    assert_eq!(idx.testable().count(), all.len());
    // The first such source in alphabetical order is picked after the
    // source before it, with autodep8 and only then.
    let src = generated[0];
    let before = all.range(..src.clone()).next_back().unwrap().clone();
    let d = tempfile::tempdir().unwrap();
    State {
        last: Some(before.clone()),
        picks: 0,
    }
    .save(&d.path().join("state/selector.json"))
    .unwrap();
    let with = Selector {
        autodep8: true,
        ..selector(Kind::RoundRobin, &path, d.path())
    };
    assert_eq!(&with.next(false).unwrap().unwrap().request.source, src);
    let without = selector(Kind::RoundRobin, &path, d.path());
    let p = without.next(false).unwrap().unwrap();
    assert_ne!(&p.request.source, src, "{}", p.why);
    assert!(own.contains(&p.request.source), "{}", p.why);
}

/// A history where every testable source ran once, seeing the archive as
/// `idx` shows it, the oldest first in alphabetical order except `newest`,
/// which ran last.
fn history_of_everything(idx: &Index, db: &Path, newest: &str) {
    let mut h = History::open(db).unwrap();
    h.batch(|h| {
        for (i, s) in idx.testable().enumerate() {
            let stamp = if s.name == newest {
                "20991231_235959".to_string()
            } else {
                format!(
                    "2026{:02}{:02}_{:06}",
                    1 + i / 28 / 24 % 12,
                    1 + i / 24 % 28,
                    i % 24 * 10000
                )
            };
            h.record(&NewRun {
                source: s.name.clone(),
                version: s.version.clone(),
                release: "bookworm".into(),
                arch: "amd64".into(),
                started: stamp,
                exitcode: 0,
                result_dir: String::new(),
                request: "{}".into(),
                seen: Some(seen_json(idx, s)),
                ..NewRun::default()
            })?;
        }
        Ok(())
    })
    .unwrap();
}

/// The index text with `source`'s Version replaced.
fn bump(text: &str, source: &str, version: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("Package: ") {
            inside = p == source;
        }
        if inside && line.starts_with("Version: ") {
            out.push_str(&format!("Version: {version}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn changed_first_picks_a_bumped_source_before_older_unchanged_ones() {
    let path = common::bookworm_sources();
    let text = std::fs::read_to_string(&path).unwrap();
    let idx = Index::parse(&text).unwrap();
    // A source no other source depends on, so that its bump changes only
    // itself (bumping hello would also change llvm-toolchain-13, whose
    // tests use it).
    let depended: BTreeSet<String> = idx
        .testable()
        .flat_map(|s| idx.dependency_versions(s).into_keys())
        .collect();
    let src = idx
        .testable()
        .map(|s| s.name.clone())
        .find(|n| n.as_str() >= "hello" && !depended.contains(n))
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    history_of_everything(&idx, &d.path().join("history.sqlite"), &src);
    let sel = selector(Kind::ChangedFirst, &path, d.path());
    let before = sel.next(false).unwrap().unwrap();
    assert_ne!(before.request.source, src);
    assert!(before.why.contains("longest untested"), "{}", before.why);

    let old = &idx.sources[&src].version;
    let bumped = d.path().join("Sources");
    std::fs::write(&bumped, bump(&text, &src, "99.0-1")).unwrap();
    let sel = selector(Kind::ChangedFirst, &bumped, d.path());
    let p = sel.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, src, "{}", p.why);
    assert!(
        p.why.contains(&format!("version {old} → 99.0-1")),
        "{}",
        p.why
    );

    // Nothing starves: with fair turns, every second pick ignores changes.
    let fair = Selector {
        fair_every: 2,
        ..sel
    };
    let p = fair.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, src);
    fair.commit(&p).unwrap();
    let p = fair.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, before.request.source, "{}", p.why);
    assert!(p.why.contains("fair turn"), "{}", p.why);
}

#[test]
fn changed_first_picks_a_source_whose_dependency_was_bumped() {
    let path = common::bookworm_sources();
    let text = std::fs::read_to_string(&path).unwrap();
    let idx = Index::parse(&text).unwrap();
    let gzip = &idx.sources["gzip"];
    // A dependency built by a source without tests of its own.
    let (dep, old) = idx
        .dependency_versions(gzip)
        .into_iter()
        .find(|(d, _)| !idx.sources[d].has_tests(idx.autodep8))
        .expect("gzip has a build or test dependency built by an untested source");
    let d = tempfile::tempdir().unwrap();
    history_of_everything(&idx, &d.path().join("history.sqlite"), "gzip");
    let bumped = d.path().join("Sources");
    std::fs::write(&bumped, bump(&text, &dep, "999:1")).unwrap();
    let sel = selector(Kind::ChangedFirst, &bumped, d.path());
    let p = sel.next(false).unwrap().unwrap();
    // The longest waiting of the sources depending on the bumped one.
    let h = History::open(&d.path().join("history.sqlite")).unwrap();
    let last = h.last_seen().unwrap();
    let expected = idx
        .testable()
        .filter(|s| idx.dependency_versions(s).contains_key(&dep))
        .min_by_key(|s| last[&s.name].0.clone())
        .unwrap();
    assert_eq!(p.request.source, expected.name, "{}", p.why);
    assert!(p.why.contains(&format!("{dep} {old} → 999:1")), "{}", p.why);

    // With gzip the only dependent left unrun since, it is gzip's turn.
    let sel = selector(Kind::ChangedFirst, &bumped, d.path());
    let mut h = History::open(&d.path().join("history.sqlite")).unwrap();
    let bidx = Index::read(&bumped).unwrap();
    for s in bidx
        .testable()
        .filter(|s| s.name != "gzip" && bidx.dependency_versions(s).contains_key(&dep))
    {
        h.record(&NewRun {
            source: s.name.clone(),
            started: "20991231_235959".into(),
            seen: Some(seen_json(&bidx, s)),
            request: "{}".into(),
            ..NewRun::default()
        })
        .unwrap();
    }
    let p = sel.next(false).unwrap().unwrap();
    assert_eq!(p.request.source, "gzip", "{}", p.why);
    assert!(p.why.contains(&dep), "{}", p.why);
}

#[test]
fn adt_runner_next_prints_the_pick_and_why_without_committing() {
    let path = common::bookworm_sources();
    // `adt-runner next` counts autodep8's sources where the host has it.
    let autodep8 = adt_runner::autodep8::installed();
    let first = testable_names(&std::fs::read_to_string(&path).unwrap(), autodep8)
        .into_iter()
        .next()
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let next = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_adt-runner"))
            .args(["next", "--selector", "round-robin", "--sources"])
            .arg(&path)
            .arg("--results")
            .arg(d.path())
            .env("ADT_RUNNER_CONFIG", d.path().join("none.toml"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A configuration file that does not exist is an error naming it.
    let (code, _, err) = next();
    assert_eq!(code, Some(20));
    assert!(err.contains("none.toml"), "{err}");
    std::fs::write(d.path().join("none.toml"), "").unwrap();
    let (code, out, err) = next();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "{first}\nwhy: round-robin: first in alphabetical order (1 of {} sources with tests)\n",
            {
                let mut idx = Index::read(&path).unwrap();
                idx.autodep8 = autodep8;
                idx.testable().count()
            }
        )
    );
    assert_eq!(next().1, out, "next commits nothing");
}
