//! Figures of the service's data paths at archive scale (printed, not
//! asserted): selection over the full bookworm main Sources index
//! (downloaded with apt on first use, see tests/data/fetch-sources), and
//! rendering the web index and one package page from a history holding one
//! million runs of that package plus one run of every source with tests.
//! The round-robin pick is shown beside the reference: the same pick in
//! Python with python3-debian's deb822 over apt_pkg's parser (the tools
//! Debian's own CI infrastructure is written with), in the same run, with
//! the ratio; both must pick the same source.
//!
//! Run: cargo bench -p adt-runner --bench service

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use adt_runner::history::{parse_summary, History, NewRun};
use adt_runner::select::changed;
use adt_runner::select::sources::Index;
use adt_runner::select::{round_robin, seen_json};
use adt_runner::web::Site;

const BIG_RUNS: usize = 1_000_000;

/// The reference round-robin pick: read the index with python3-debian,
/// keep each source's highest version, take the sources whose Testsuite
/// lists autopkgtest, pick the first after `last` (wrapping). Prints the
/// median of 3 timings in seconds, the pick, and the parser used.
const PY_REFERENCE: &str = r#"
import sys, time
from debian import deb822
from debian.debian_support import version_compare
path, last = sys.argv[1], sys.argv[2]
times = []
for _ in range(3):
    t = time.monotonic()
    newest = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for p in deb822.Sources.iter_paragraphs(f, use_apt_pkg=True):
            name, version = p.get("Package"), p.get("Version")
            if not name or not version:
                continue
            tested = "autopkgtest" in [x.strip() for x in p.get("Testsuite", "").split(",")]
            old = newest.get(name)
            if old is None or version_compare(version, old[0]) > 0:
                newest[name] = (version, tested)
    names = sorted(n for n, (_, tested) in newest.items() if tested)
    pick = next((n for n in names if n > last), names[0])
    times.append(time.monotonic() - t)
times.sort()
try:
    import apt_pkg
    parser = "apt_pkg"
except ImportError:
    parser = "pure Python"
print(times[1], pick, parser)
"#;

fn sources() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data");
    let path = dir.join("bookworm-main-Sources");
    if !path.exists() {
        let ok = Command::new("sh")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fetch-sources"))
            .arg("bookworm")
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot fetch the bookworm Sources index");
    }
    path
}

/// The median of `n` timings of `f`.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    v.sort();
    v[n / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn run(source: &str, version: &str, i: usize, summary: &str, code: i32) -> NewRun {
    NewRun {
        source: source.into(),
        version: version.into(),
        release: "bookworm".into(),
        arch: "amd64".into(),
        started: format!(
            "2026{:02}{:02}_{:06}",
            1 + i / 86_400 / 28 % 12,
            1 + i / 86_400 % 28,
            i % 86_400 % 240_000
        ),
        duration: 60,
        exitcode: code,
        result_dir: format!("bookworm/amd64/{}/{source}/{i}@", &source[..1]),
        request: "{}".into(),
        seen: None,
        tests: parse_summary(summary),
    }
}

fn main() {
    let path = sources();
    let text = std::fs::read_to_string(&path).unwrap();
    let parse = time(5, || Index::parse(&text).unwrap());
    let idx = Index::parse(&text).unwrap();
    let testable = idx.testable().count();
    println!(
        "Sources index: {} stanzas, {} sources, {testable} with tests ({:.1} MB)",
        idx.stanzas,
        idx.sources.len(),
        text.len() as f64 / 1e6
    );
    println!("  parse the whole index:                 {}", ms(parse));
    let last = idx.testable().nth(testable / 2).unwrap().name.clone();
    let ours = time(5, || {
        round_robin(&Index::read(&path).unwrap(), Some(&last)).map(|p| p.request.source)
    });
    let our_pick = round_robin(&idx, Some(&last)).map(|p| p.request.source);
    // Debian's python3, where python3-debian and python3-apt are.
    let reference = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PY_REFERENCE)
        .arg(&path)
        .arg(&last)
        .output()
        .expect("python3");
    assert!(
        reference.status.success(),
        "the python3-debian reference failed: {}",
        String::from_utf8_lossy(&reference.stderr)
    );
    let line = String::from_utf8_lossy(&reference.stdout)
        .trim()
        .to_string();
    let mut words = line.split_whitespace();
    let ref_secs: f64 = words.next().and_then(|w| w.parse().ok()).expect(&line);
    let ref_pick = words.next().expect(&line).to_string();
    let parser = words.collect::<Vec<_>>().join(" ");
    println!(
        "  round-robin pick (read + parse + pick): {} | python3-debian ({parser}): {:.1} ms | ratio {:.3}",
        ms(ours),
        ref_secs * 1000.0,
        ours.as_secs_f64() / ref_secs
    );
    assert_eq!(
        our_pick.as_deref(),
        Some(ref_pick.as_str()),
        "both pick the same source after {last}"
    );

    let d = tempfile::tempdir().unwrap();
    let mut hist = History::open(&d.path().join("history.sqlite")).unwrap();
    let t = Instant::now();
    hist.batch(|h| {
        for (i, s) in idx.testable().enumerate() {
            let mut r = run(&s.name, &s.version, i, "smoke                PASS\n", 0);
            r.seen = Some(seen_json(&idx, s));
            h.record(&r)?;
        }
        Ok(())
    })
    .unwrap();
    println!(
        "  history: one run per source recorded in {}",
        ms(t.elapsed())
    );
    let changed_pick = time(5, || {
        let last = hist.last_seen().unwrap();
        changed::pick(&idx, &last, 0, 0)
    });
    println!(
        "  changed-first pick (history + pick):   {}",
        ms(changed_pick)
    );

    let t = Instant::now();
    let pass = "smoke                PASS\nunit                 PASS\n";
    let fail = "smoke                PASS\nunit                 FAIL non-zero exit status 1\n";
    for chunk in 0..BIG_RUNS / 100_000 {
        hist.batch(|h| {
            for i in chunk * 100_000..(chunk + 1) * 100_000 {
                let (s, c) = if i % 10 == 9 { (fail, 4) } else { (pass, 0) };
                h.record(&run("hello", "2.10-3", i, s, c))?;
            }
            Ok(())
        })
        .unwrap();
    }
    println!(
        "History: {BIG_RUNS} runs of hello (2 tests each) recorded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let site = Site {
        out: d.path().join("web"),
        results_url: Some("https://ci.example.org/results".into()),
        results_dir: d.path().join("results"),
    };
    println!(
        "  render index.html ({} sources):      {}",
        testable,
        ms(time(5, || site.render_index(&hist).unwrap()))
    );
    println!(
        "  render packages/hello.html (1M runs): {}",
        ms(time(5, || site.render_source(&hist, "hello").unwrap()))
    );
    println!(
        "  render regressions.html:              {}",
        ms(time(5, || site.render_regressions(&hist).unwrap()))
    );
    let size = std::fs::metadata(d.path().join("history.sqlite")).map_or(0, |m| m.len());
    println!("  history.sqlite: {:.0} MB", size as f64 / 1e6);
}
