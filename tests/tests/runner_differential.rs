//! Differential test of adt-runner against Debian's autopkgtest 5.28: every
//! DEP-8 fixture under tests/fixtures/ and the archive packages `mawk` (its
//! own debian/tests/control), `lazy` and `libfile-pid-perl` (only tests
//! autodep8 generates: a Python import; Perl's three, with @builddeps@ and
//! needs-recommends) run through `autopkgtest SRC -- ssh ...` and through
//! `adt-runner run SRC --testbed ssh:...`, each on its own sshd testbed
//! reverted to the same pristine root before every package. The verdict of
//! every test with its
//! reason (blanks folded), every other summary line's first word, and the
//! exit code must be equal. Prints the table. The output directories must
//! hold the same files (adt-runner's `exitcode` and `duration` aside), and
//! `testpkg-version`, `testbed-packages`, every `<test>-packages` and
//! `testinfo.json` (but its `virt_server`) must read the same: what was
//! tested, on what, with what installed.
//!
//! A fixture whose build is incidental (every test has an empty Depends
//! and none is build-needed, autodep8 adds none, and debian/rules is the
//! plain `dh $@`: the same trivial build as every other fixture's) runs
//! with -B on both sides, shown as `NAME -B`; the others, build-fails
//! among them, run built, as autopkgtest runs a tree by default.
//!
//! ADT_DIFF_ONLY=name,name restricts the packages; ADT_DIFF_ARCHIVE=src,src
//! adds archive source packages after that (a wider sweep by hand:
//! `ADT_DIFF_ONLY=none ADT_DIFF_ARCHIVE=hello,sed cargo test ...`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use adt_systest::testbed::{scripts_dir, setup_script, SshTestbed};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Why this test cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (the sshd testbed uses namespaces)".into());
    }
    let has = |t: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !has("autopkgtest") {
        return Some("Debian's autopkgtest is not installed (tests/run-suite installs it)".into());
    }
    if !has("autodep8") {
        return Some(
            "autodep8 is not installed (tests/run-suite installs it): the autodep8 fixtures would prove nothing"
                .into(),
        );
    }
    None
}

/// The adt-runner binary of this workspace, built if needed.
fn adt_runner() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join("adt-runner");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(workspace())
        .args(["build", "-p", "adt-runner", "--bin", "adt-runner"]);
    if profile_dir.ends_with("release") {
        build.arg("--release");
    }
    let st = build.status().expect("cargo build -p adt-runner");
    assert!(
        st.success() && bin.exists(),
        "cannot build {}",
        bin.display()
    );
    bin
}

/// One summary line reduced to what must agree: the test (or `blame:`,
/// `badpkg:`...) and its verdict with its reason (`FAIL non-zero exit
/// status 2`, `SKIP Test requires ...`), blanks folded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    test: String,
    word: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    code: i32,
    lines: Vec<Line>,
}

fn outcome(code: i32, outdir: &Path) -> Outcome {
    // A missing summary is a line of its own, so that it differs from an
    // empty one and from any verdict.
    let Ok(summary) = std::fs::read_to_string(outdir.join("summary")) else {
        let lines = vec![Line {
            test: "(no summary file)".into(),
            word: String::new(),
        }];
        return Outcome { code, lines };
    };
    let lines = summary
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let test = words.next().unwrap_or("").to_string();
            let mut word = words.collect::<Vec<_>>().join(" ");
            if test.ends_with(':') {
                word.clear(); // blame:/badpkg: lines carry paths and messages
            }
            Line { test, word }
        })
        .collect();
    Outcome { code, lines }
}

const PLAIN_DH_RULES: &str = "#!/usr/bin/make -f\n%:\n\tdh $@\n";

/// See the module's comment.
fn build_is_incidental(fixture: &Path) -> bool {
    let read = |rel: &str| std::fs::read_to_string(fixture.join(rel)).unwrap_or_default();
    // autodep8's tests (autopkgtest-pkg-* in Testsuite) install the
    // package's binaries.
    if read("debian/control").contains("autopkgtest-pkg-") {
        return false;
    }
    let control = read("debian/tests/control");
    let stanzas: Vec<&str> = control
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .collect();
    read("debian/rules") == PLAIN_DH_RULES
        && !stanzas.is_empty()
        && stanzas.iter().all(|st| {
            let lines: Vec<&str> = st.lines().collect();
            let empty_depends = lines.iter().enumerate().any(|(i, l)| {
                l.strip_prefix("Depends:")
                    .is_some_and(|v| v.trim().is_empty())
                    && !lines.get(i + 1).is_some_and(|n| n.starts_with([' ', '\t']))
            });
            empty_depends && !st.contains("build-needed")
        })
}

/// The fixture's runner-args: one argument a line (blank lines skipped,
/// leading and trailing blanks dropped, as run-reference's `read`), with
/// `@FIXTURE@` standing for the fixture's directory.
fn runner_args(src: &Path) -> Vec<String> {
    std::fs::read_to_string(src.join("runner-args"))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| l.replace("@FIXTURE@", &src.display().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn run_autopkgtest(tb: &SshTestbed, src: &str, args: &[String], out: &Path) -> Outcome {
    let st = Command::new("autopkgtest")
        .arg("--output-dir")
        .arg(out)
        .args(args)
        .arg(src)
        .args([
            "--",
            "ssh",
            "-H",
            &tb.host,
            "-p",
            &tb.port.to_string(),
            "-l",
            &tb.user,
            "-i",
        ])
        .arg(&tb.key_path)
        .arg("-s")
        .arg(setup_script())
        .arg("--")
        .arg(tb.dir())
        .stdout(std::fs::File::create(out.with_extension("console")).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    outcome(st.code().unwrap_or(-1), out)
}

fn run_adt_runner(bin: &Path, tb: &SshTestbed, src: &str, args: &[String], out: &Path) -> Outcome {
    let revert = format!(
        "{} {}",
        scripts_dir().join("revert").display(),
        tb.dir().display()
    );
    let st = Command::new(bin)
        .arg("run")
        .arg(src)
        .args(args)
        .args([
            "--testbed",
            &tb.spec(),
            "--revert-command",
            &revert,
            "--identity",
        ])
        .arg(&tb.key_path)
        .arg("-o")
        .arg(out)
        .stdout(std::fs::File::create(out.with_extension("console")).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    outcome(st.code().unwrap_or(-1), out)
}

/// autopkgtest on `tbs[0]` and adt-runner on `tbs[1]`, side by side, on
/// the same source with the same arguments.
fn run_side_by_side(
    bin: &Path,
    tbs: [&SshTestbed; 2],
    src: &str,
    args: &[String],
    outs: [&Path; 2],
) -> (Outcome, Outcome) {
    std::thread::scope(|s| {
        let a = s.spawn(|| run_autopkgtest(tbs[0], src, args, outs[0]));
        let b = s.spawn(|| run_adt_runner(bin, tbs[1], src, args, outs[1]));
        (a.join().unwrap(), b.join().unwrap())
    })
}

fn packages() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace().join("tests/fixtures"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("debian/control").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.extend(["mawk".into(), "lazy".into(), "libfile-pid-perl".into()]);
    if let Ok(only) = std::env::var("ADT_DIFF_ONLY") {
        let only: Vec<&str> = only.split(',').collect();
        names.retain(|n| only.contains(&n.as_str()));
    }
    if let Ok(more) = std::env::var("ADT_DIFF_ARCHIVE") {
        names.extend(more.split(',').filter(|n| !n.is_empty()).map(String::from));
    }
    names
}

/// The files under `dir`, relative to it, directories marked with `/`.
fn tree(dir: &Path) -> std::collections::BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, into: &mut std::collections::BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                into.insert(format!("{rel}/"));
                walk(root, &path, into);
            } else {
                into.insert(rel);
            }
        }
    }
    let mut files = std::collections::BTreeSet::new();
    walk(dir, dir, &mut files);
    files
}

/// Where adt-runner's output directory `ours` differs from autopkgtest's
/// `theirs` (see the module's comment), one line each.
fn output_differences(theirs: &Path, ours: &Path) -> Vec<String> {
    let a = tree(theirs);
    let mut b = tree(ours);
    b.remove("exitcode");
    b.remove("duration");
    let mut found: Vec<String> = a
        .difference(&b)
        .map(|f| format!("only autopkgtest wrote {f}"))
        .chain(
            b.difference(&a)
                .map(|f| format!("only adt-runner wrote {f}")),
        )
        .collect();
    for f in a.intersection(&b) {
        if f == "testinfo.json" {
            // The same fields with the same values, but for the command
            // that reached the testbed.
            let read = |d: &Path| -> serde_json::Map<String, serde_json::Value> {
                let text = std::fs::read_to_string(d.join(f)).unwrap_or_default();
                let mut m: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&text).unwrap_or_default();
                m.remove("virt_server");
                m
            };
            let (x, y) = (read(theirs), read(ours));
            if x != y {
                found.push(format!("testinfo.json differs: {x:?} against {y:?}"));
            }
        }
        if f == "testpkg-version" || f.ends_with("-packages") {
            let read = |d: &Path| std::fs::read_to_string(d.join(f)).unwrap_or_default();
            let (x, y) = (read(theirs), read(ours));
            if x != y {
                // Package lines are `name<TAB>version`; the names say enough.
                let only = |p: &str, q: &str| {
                    p.lines()
                        .filter(|l| !q.lines().any(|m| m == *l))
                        .map(|l| l.split('\t').next().unwrap_or(l))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                found.push(format!(
                    "{f} differs: only autopkgtest's has [{}], only adt-runner's has [{}]",
                    only(&x, &y),
                    only(&y, &x)
                ));
            }
        }
    }
    found
}

/// Summary line `i` of `o` as the table shows it.
fn shown_line(o: &Outcome, i: usize) -> String {
    o.lines
        .get(i)
        .map(|l| format!("{} {}", l.test, l.word))
        .unwrap_or_else(|| "-".into())
}

/// One line of the table.
fn table_line(name: &str, a: &Outcome, b: &Outcome, i: usize, status: &str) -> String {
    format!(
        "{name:<40} | {:<60} | {:<60} | {:>3} | {:>3} | {status}",
        shown_line(a, i),
        shown_line(b, i),
        a.code,
        b.code,
    )
}

fn row(name: &str, a: &Outcome, b: &Outcome) -> Vec<String> {
    let n = a.lines.len().max(b.lines.len());
    (0..n)
        .map(|i| {
            let same = a.lines.get(i) == b.lines.get(i) && a.code == b.code;
            table_line(name, a, b, i, if same { "same" } else { "DIFFERENT" })
        })
        .collect()
}

#[test]
fn adt_runner_gives_autopkgtests_verdicts_and_exit_codes() {
    if let Some(why) = unavailable() {
        adt_systest::skip(&why);
        return;
    }
    let bin = adt_runner();
    let mut ref_tb = SshTestbed::start().expect("testbed for autopkgtest");
    let mut our_tb = SshTestbed::start().expect("testbed for adt-runner");
    let results = tempfile::Builder::new()
        .prefix("adt-differential.")
        .tempdir()
        .unwrap();
    let mut table = vec![format!(
        "{:<40} | {:<60} | {:<60} | {:>3} | {:>3} |",
        "package", "autopkgtest: test verdict", "adt-runner: test verdict", "rc", "rc"
    )];
    let mut differing = Vec::new();
    let mut unexpected = Vec::new();
    let mut files_differ = Vec::new();
    for name in packages() {
        let fixture = workspace().join("tests/fixtures").join(&name);
        let (src, mut args) = if fixture.is_dir() {
            (fixture.display().to_string(), runner_args(&fixture))
        } else {
            (name.clone(), Vec::new())
        };
        let shown = if fixture.is_dir() && build_is_incidental(&fixture) {
            args.push("-B".into());
            format!("{name} -B")
        } else {
            name.clone()
        };
        ref_tb.revert().expect("revert");
        our_tb.revert().expect("revert");
        let (ref_out, our_out) = (
            results.path().join(format!("{name}.autopkgtest")),
            results.path().join(format!("{name}.adt-runner")),
        );
        let (a, b) = run_side_by_side(&bin, [&ref_tb, &our_tb], &src, &args, [&ref_out, &our_out]);
        let rows = row(&shown, &a, &b);
        table.extend(rows);
        if a != b {
            differing.push(name.clone());
        }
        for d in output_differences(&ref_out, &our_out) {
            files_differ.push(format!("{name}: {d}"));
        }
        // Both sides agreeing is not enough: a testbed or mirror failure
        // gives the same exit code on both. The fixture says what
        // autopkgtest gives.
        if let Some(want) = expected_exitcode(&fixture) {
            if a.code != want || b.code != want {
                unexpected.push(format!(
                    "{name}: expected exit code {want}, autopkgtest gave {}, adt-runner {}",
                    a.code, b.code
                ));
            }
        }
    }
    // Straight to the process's stderr: the test harness captures print!
    // and eprint!, and the table is meant to be read in every run's log.
    let _ = writeln!(std::io::stderr(), "{}", table.join("\n"));
    let _ = writeln!(
        std::io::stderr(),
        "output directories: {}",
        if files_differ.is_empty() {
            "the same files, the same versions and packages".to_string()
        } else {
            format!("\n  {}", files_differ.join("\n  "))
        }
    );
    assert!(
        differing.is_empty() && unexpected.is_empty() && files_differ.is_empty(),
        "verdicts or exit codes differ for {differing:?}; {unexpected:?}; output files differ: \
         {files_differ:?}; outputs kept in {}",
        results.keep().display()
    );
}

/// The fixture's `expected-exitcode`: autopkgtest's exit code for it.
fn expected_exitcode(fixture: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(fixture.join("expected-exitcode")).ok()?;
    Some(text.trim().parse().unwrap_or_else(|e| {
        panic!(
            "{}/expected-exitcode: not an exit code: {e}",
            fixture.display()
        )
    }))
}

#[test]
fn every_fixture_says_its_exit_code() {
    let dir = workspace().join("tests/fixtures");
    let missing: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("debian/control").exists())
        .filter(|e| expected_exitcode(&e.path()).is_none())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(missing.is_empty(), "no expected-exitcode in {missing:?}");
}

/// Makes `tb` reachable as the ordinary user `tester` with passwordless
/// sudo (through the key root logs in with), as a cloud image's default
/// user is. With `resolvable` false its host name no longer resolves, so
/// sudo works but complains on stderr.
fn login_user_with_sudo(tb: &SshTestbed, resolvable: bool) {
    assert_eq!(tb.user, "root");
    let mut script = String::from(
        "set -e
DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null 2>&1
useradd --create-home --shell /bin/bash tester
install -d -m 700 -o tester -g tester /home/tester/.ssh
install -m 600 -o tester -g tester /root/.ssh/authorized_keys /home/tester/.ssh/
echo 'tester ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/tester
chmod 440 /etc/sudoers.d/tester
",
    );
    if !resolvable {
        script += "sed -i \"/$(hostname)/d\" /etc/hosts\n";
    }
    let out = tb.ssh(&script).output().unwrap();
    assert!(
        out.status.success(),
        "setting up the login user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<test>-stdout` files of an output directory, by name.
fn stdouts(outdir: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(outdir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with("-stdout"))
                .map(|n| {
                    let text = std::fs::read_to_string(outdir.join(&n)).unwrap_or_default();
                    (n, text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ssh:tester@...`: an ordinary login user with sudo is the tests' normal
/// user, and root comes through sudo, on both sides; a sudo that complains
/// on stderr is a testbed failure on both.
#[test]
fn a_login_user_with_sudo_gets_autopkgtests_verdicts_and_users() {
    if let Some(why) = unavailable() {
        adt_systest::skip(&why);
        return;
    }
    let bin = adt_runner();
    let mut tbs = [
        SshTestbed::start().expect("testbed for autopkgtest"),
        SshTestbed::start().expect("testbed for adt-runner"),
    ];
    let results = tempfile::Builder::new()
        .prefix("adt-differential-sudo.")
        .tempdir()
        .unwrap();
    let mut run_both = |name: &str, resolvable: bool| {
        for tb in tbs.iter_mut() {
            tb.user = "root".into();
            tb.revert().expect("revert");
            login_user_with_sudo(tb, resolvable);
            tb.user = "tester".into();
        }
        let src = workspace().join("tests/fixtures").join(name);
        let src = src.display().to_string();
        let args = ["-B".to_string()];
        let (ref_out, our_out) = (
            results
                .path()
                .join(format!("{name}-{resolvable}.autopkgtest")),
            results
                .path()
                .join(format!("{name}-{resolvable}.adt-runner")),
        );
        let (a, b) = run_side_by_side(&bin, [&tbs[0], &tbs[1]], &src, &args, [&ref_out, &our_out]);
        (a, b, stdouts(&ref_out), stdouts(&our_out), our_out)
    };
    for name in ["runs-as-normal-user", "needs-root-as-root", "needs-sudo"] {
        let (a, b, a_out, b_out, _) = run_both(name, true);
        let shown = format!("{name} (tester, sudo)");
        let _ = writeln!(std::io::stderr(), "{}", row(&shown, &a, &b).join("\n"));
        assert_eq!(a, b, "{name}: verdicts or exit codes differ");
        assert_eq!(a.code, 0, "{name}: {a:?}");
        // "running as tester", "AUTOPKGTEST_NORMAL_USER=tester", ...
        assert_eq!(a_out, b_out, "{name}: the tests printed different things");
        assert!(
            b_out.values().any(|t| t.contains("tester")),
            "{name}: {b_out:?}"
        );
    }
    // Only the exit code is compared here: the summary's words differ on
    // purpose (docs/ARCHITECTURE.md, deliberate differences).
    let (a, b, _, _, our_out) = run_both("pass-trivial", false);
    let status = if a.code == b.code {
        "same exit code (words differ on purpose)"
    } else {
        "DIFFERENT"
    };
    let shown = "pass-trivial (tester, sudo warns)";
    let _ = writeln!(
        std::io::stderr(),
        "{}",
        table_line(shown, &a, &b, 0, status)
    );
    assert_eq!((a.code, b.code), (16, 16), "{a:?} {b:?}");
    let summary = std::fs::read_to_string(our_out.join("summary")).unwrap();
    assert!(
        summary.starts_with(
            "testbed failure: sudo failed with stderr: \"sudo: unable to resolve host"
        ),
        "{summary}"
    );
}

#[test]
fn fixtures_whose_build_matters_are_compared_built() {
    let fixture = |n: &str| workspace().join("tests/fixtures").join(n);
    for name in [
        "build-fails",
        "build-needed-tree",
        "env-in-build-and-test",
        "depends-at",
        "depends-builddeps",
        "depends-recommends",
        "malformed-control",
        "uninstallable-depends",
        "uninstallable-depends-skip-not-installable",
        "autodep8-adds-to-control",
        "autodep8-generates-tests",
    ] {
        assert!(fixture(name).is_dir(), "{name}");
        assert!(
            !build_is_incidental(&fixture(name)),
            "{name} is not compared built"
        );
    }
    for name in [
        "pass-trivial",
        "mixed-verdicts",
        "test-command-with-test-name",
    ] {
        assert!(
            build_is_incidental(&fixture(name)),
            "{name} is compared built"
        );
    }
}
