//! Benchmark: the trivial fixture (`Test-Command: true`, no dependencies)
//! through adt-runner and through Debian's autopkgtest, on the same kind of
//! freshly reverted sshd testbed, one after the other; prints both wall
//! times and their ratio (target: adt-runner at most half of autopkgtest).
//!
//! A third line times the testbed's share alone (tests/benches/
//! testbed-work): the commands both tools run in the testbed, back to back
//! from one shell script with no runner around them. Its ratio to
//! autopkgtest is as low as any runner doing that work in that order can
//! go; adt-runner's distance from it is adt-runner's own cost.
//!
//! It runs on three testbeds: the tests' minbase root, where both tools
//! install dpkg-dev to unpack the tree (and keep it with -B) and the build
//! dependencies to build it; the same root with dpkg-dev, as the Xen
//! testbed images have it, where neither installs dpkg-dev; and that root
//! with the fixture's build dependencies too, where a build installs
//! nothing but the throw-away package (ADT_TESTBED_INCLUDE, see
//! tests/testbed/mk-root).
//!
//! Run: cargo bench -p adt-systest --bench runner_trivial (as root).
//! ADT_BENCH_ROUNDS=N repeats each side N times (default 1, alternating)
//! and reports the median, with the fastest and slowest run;
//! ADT_BENCH_TESTBEDS=minbase,dpkg-dev,build-ready picks testbeds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use adt_systest::testbed::{scripts_dir, setup_script, SshTestbed};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn adt_runner() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--release",
            "-p",
            "adt-runner",
            "--bin",
            "adt-runner",
        ])
        .status()
        .expect("cargo build");
    assert!(st.success(), "cannot build adt-runner");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target.join("release/adt-runner")
}

fn timed(mut cmd: Command) -> (Duration, i32) {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    (t.elapsed(), st.code().unwrap_or(-1))
}

/// "median s (min-max)" of the samples, in seconds.
fn spread(mut v: Vec<Duration>) -> (f64, String) {
    v.sort();
    let med = v[v.len() / 2].as_secs_f64();
    let text = if v.len() > 1 {
        format!(
            "{med:>8.2} s  ({:.2}-{:.2})",
            v[0].as_secs_f64(),
            v[v.len() - 1].as_secs_f64()
        )
    } else {
        format!("{med:>8.2} s")
    };
    (med, text)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("runner_trivial: skipped: needs root (the sshd testbed uses namespaces)");
        return;
    }
    let rounds: usize = std::env::var("ADT_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let bin = adt_runner();
    let fixture = workspace().join("tests/fixtures/pass-trivial");
    println!(
        "pass-trivial (Test-Command: true), median of {rounds} run(s) each, same sshd testbed:"
    );
    // Each testbed is a cached root (tests/testbed/mk-root) with more or
    // fewer packages in it (ADT_TESTBED_INCLUDE); ADT_BENCH_TESTBEDS picks
    // some by name (comma-separated), all by default.
    let testbeds: [(&str, &str, &str); 3] = [
        (
            "minbase",
            "",
            "debootstrap minbase + openssh-server (the tests' testbed): both tools install dpkg-dev to unpack the tree, and the build dependencies to build it",
        ),
        (
            "dpkg-dev",
            "dpkg-dev",
            "the same plus dpkg-dev (as the Xen testbed images have it, tests/xenlab/packages/domu.list)",
        ),
        (
            "build-ready",
            "dpkg-dev,build-essential,fakeroot,debhelper",
            "the same plus the fixture's build dependencies (build-essential, fakeroot, debhelper), as a build chroot has them",
        ),
    ];
    let wanted = std::env::var("ADT_BENCH_TESTBEDS").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split(',').filter(|s| !s.is_empty()).collect();
    for w in &wanted {
        assert!(
            testbeds.iter().any(|(name, ..)| name == w),
            "ADT_BENCH_TESTBEDS: unknown testbed '{w}'; expected some of minbase, dpkg-dev, build-ready"
        );
    }
    for (name, include, about) in testbeds {
        if !wanted.is_empty() && !wanted.contains(&name) {
            continue;
        }
        std::env::set_var("ADT_TESTBED_INCLUDE", include);
        let mut tb = SshTestbed::start().expect("sshd testbed");
        println!("testbed {name}: {about}");
        measure(&mut tb, &bin, &fixture, rounds);
    }
}

/// Times pass-trivial through adt-runner, autopkgtest and testbed-work on
/// `tb`, built and with -B.
fn measure(tb: &mut SshTestbed, bin: &Path, fixture: &Path, rounds: usize) {
    let revert = format!(
        "{} {}",
        scripts_dir().join("revert").display(),
        tb.dir().display()
    );
    let modes: [(&str, &[&str]); 2] = [
        ("default (a tree's binaries are built)", &[]),
        ("-B (no built binaries)", &["-B"]),
    ];
    for (label, extra) in modes {
        let (mut ours, mut theirs, mut floor) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            tb.revert().expect("revert");
            let out = tempfile::tempdir().unwrap();
            let mut c = Command::new(bin);
            c.arg("run").arg(fixture).args(extra);
            c.args([
                "--testbed",
                &tb.spec(),
                "--revert-command",
                &revert,
                "--identity",
            ]);
            c.arg(&tb.key_path).arg("-o").arg(out.path().join("o"));
            let (d, rc) = timed(c);
            assert_eq!(rc, 0, "adt-runner failed on pass-trivial");
            ours.push(d);

            tb.revert().expect("revert");
            let out = tempfile::tempdir().unwrap();
            let mut c = Command::new("autopkgtest");
            c.arg("--output-dir")
                .arg(out.path().join("o"))
                .args(extra)
                .arg(fixture);
            c.args([
                "--",
                "ssh",
                "-H",
                &tb.host,
                "-p",
                &tb.port.to_string(),
                "-l",
                &tb.user,
                "-i",
            ]);
            c.arg(&tb.key_path)
                .arg("-s")
                .arg(setup_script())
                .arg("--")
                .arg(tb.dir());
            let (d, rc) = timed(c);
            assert_eq!(rc, 0, "autopkgtest failed on pass-trivial");
            theirs.push(d);

            tb.revert().expect("revert");
            let mut c = Command::new(workspace().join("tests/benches/testbed-work"));
            c.args(extra).arg(fixture).arg(tb.dir());
            let (d, rc) = timed(c);
            assert_eq!(
                rc, 0,
                "tests/benches/testbed-work failed on pass-trivial (run it by hand to see why)"
            );
            floor.push(d);
        }
        let ((a, a_text), (b, b_text)) = (spread(ours), spread(theirs));
        let (f, f_text) = spread(floor);
        println!("  {label}:");
        println!("    adt-runner   {a_text}");
        println!("    autopkgtest  {b_text}");
        println!("    testbed work {f_text}  (the testbed commands alone, no runner)");
        println!(
            "    ratio adt-runner/autopkgtest = {:.3} (target <= 0.5)",
            a / b
        );
        println!(
            "    ratio testbed work/autopkgtest = {:.3} (the floor for this work)",
            f / b
        );
    }
}
