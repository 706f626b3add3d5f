//! The `changed-first` selector: sources whose version changed, or one of
//! whose build or test dependencies (resolved to the source building it)
//! changed version, since their last run come first, the longest waiting
//! of them first; otherwise the longest untested source (never tested
//! ones before all others). So that a stream of changes cannot starve the
//! rest, every `fair_every`-th pick is the longest untested source
//! whatever changed.
//!
//! Not for: reading the index (`sources`) or the history (`history`).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::sources::{Index, SourcePkg};
use super::{control_of, seen_json, Pick, Request};

#[derive(Deserialize, Default)]
struct Seen {
    #[serde(default)]
    version: String,
    #[serde(default)]
    deps: BTreeMap<String, String>,
}

/// Why `src` changed since `seen`, or `None`.
fn change(idx: &Index, src: &SourcePkg, seen: &Seen) -> Option<String> {
    if !seen.version.is_empty() && seen.version != src.version {
        return Some(format!("version {} → {}", seen.version, src.version));
    }
    let now = idx.dependency_versions(src);
    let bumps: Vec<String> = now
        .iter()
        .filter_map(|(dep, v)| match seen.deps.get(dep) {
            Some(old) if old != v => Some(format!("{dep} {old} → {v}")),
            _ => None,
        })
        .collect();
    (!bumps.is_empty()).then(|| format!("dependency changed: {}", bumps.join(", ")))
}

/// The pick, given the last run of every source (`stamp`, `seen` JSON)
/// and how many picks were committed before.
pub fn pick(
    idx: &Index,
    last: &HashMap<String, (String, Option<String>)>,
    picks: u64,
    fair_every: u64,
) -> Option<Pick> {
    // (last run stamp, "" for never, name) orders the longest untested first.
    let mut oldest: Option<(&str, &SourcePkg)> = None;
    let mut changed: Option<(&str, &SourcePkg, String)> = None;
    for src in idx.testable() {
        let (stamp, seen) = match last.get(&src.name) {
            Some((stamp, seen)) => (stamp.as_str(), seen.as_deref()),
            None => ("", None),
        };
        if oldest.is_none_or(|(s, _)| stamp < s) {
            oldest = Some((stamp, src));
        }
        if stamp.is_empty() || changed.as_ref().is_some_and(|(s, _, _)| stamp >= *s) {
            continue;
        }
        let seen: Seen = seen
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        if let Some(why) = change(idx, src, &seen) {
            changed = Some((stamp, src, why));
        }
    }
    let (stamp, src) = oldest?;
    let untested = |extra: &str| {
        if stamp.is_empty() {
            format!("changed-first: {} never tested{extra}", src.name)
        } else {
            format!(
                "changed-first: {} is the longest untested (last run {stamp}){extra}",
                src.name
            )
        }
    };
    let fair_turn = fair_every > 0 && (picks + 1).is_multiple_of(fair_every);
    let (src, why) = match changed {
        Some((_, _, _)) if fair_turn => (
            src,
            untested(&format!(
                "; fair turn: every {fair_every}th pick ignores changes so nothing starves"
            )),
        ),
        Some((s, c, why)) => (
            c,
            format!(
                "changed-first: {} changed since its last run {s}: {why}",
                c.name
            ),
        ),
        None => (src, untested(", and nothing changed")),
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

    const INDEX: &str = "\
Package: a
Binary: a
Version: 1
Testsuite: autopkgtest

Package: b
Binary: b-bin
Version: 1
Testsuite: autopkgtest
Build-Depends: libz-dev

Package: c
Binary: c
Version: 1
Testsuite: autopkgtest

Package: zlib
Binary: libz-dev
Version: 2
";

    fn last(entries: &[(&str, &str, &str)]) -> HashMap<String, (String, Option<String>)> {
        entries
            .iter()
            .map(|(n, stamp, seen)| (n.to_string(), (stamp.to_string(), Some(seen.to_string()))))
            .collect()
    }

    #[test]
    fn never_tested_comes_first_then_changes_then_the_oldest() {
        let idx = Index::parse(INDEX).unwrap();
        let p = pick(
            &idx,
            &last(&[("a", "20260101_000000", r#"{"version":"1"}"#)]),
            0,
            0,
        )
        .unwrap();
        assert_eq!(p.request.source, "b");
        assert!(p.why.contains("never tested"), "{}", p.why);

        let all = last(&[
            ("a", "20260103_000000", r#"{"version":"0.9"}"#),
            (
                "b",
                "20260102_000000",
                r#"{"version":"1","deps":{"zlib":"1"}}"#,
            ),
            ("c", "20260101_000000", r#"{"version":"1"}"#),
        ]);
        let p = pick(&idx, &all, 0, 0).unwrap();
        assert_eq!(p.request.source, "b", "{}", p.why);
        assert!(p.why.contains("zlib 1 → 2"), "{}", p.why);
        let p = pick(&idx, &all, 3, 4).unwrap();
        assert_eq!(p.request.source, "c", "the fourth pick is fair: {}", p.why);
        assert!(p.why.contains("fair turn"), "{}", p.why);
    }
}
