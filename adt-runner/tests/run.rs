//! System tests of `adt-runner run` on the DEP-8 fixtures (tests/fixtures/)
//! against the sshd testbed (tests/testbed/): verdicts, exit codes and the
//! output directory, as DEP-8 and autopkgtest define them.

mod bed;

use bed::{fixture, run, run_without_revert, unavailable, Bed, HEAVY};

macro_rules! need_testbed {
    () => {
        if let Some(why) = unavailable() {
            adt_systest::skip(&why);
            return;
        }
    };
}

/// (fixture, [(test, verdict prefix)], exit code).
type Case = (&'static str, &'static [(&'static str, &'static str)], i32);

/// The expected outcome of every fixture, from DEP-8's rules.
const CASES: &[Case] = &[
    ("allow-stderr-passes", &[("warns-on-stderr", "PASS")], 0),
    ("stderr-fails", &[("warns-on-stderr", "FAIL stderr: ")], 4),
    (
        "exit77-skippable",
        &[(
            "skips-itself",
            "SKIP exit status 77 and marked as skippable",
        )],
        8,
    ),
    (
        "exit77-not-skippable",
        &[("exits-77", "FAIL non-zero exit status 77")],
        4,
    ),
    (
        "flaky-fails",
        &[("fails-sometimes", "FLAKY non-zero exit status")],
        8,
    ),
    ("superficial-pass", &[("smoke", "PASS (superficial)")], 8),
    (
        "unknown-restriction",
        &[("needs-magic", "SKIP unknown restriction needs-magic-smoke")],
        8,
    ),
    (
        "unknown-field",
        &[
            ("has-unknown-field", "SKIP unknown field Frobnicate"),
            ("known-fields", "PASS"),
        ],
        2,
    ),
    ("needs-root-as-root", &[("runs-as-root", "PASS")], 0),
    ("runs-as-normal-user", &[("not-root", "PASS")], 0),
    ("rw-build-tree", &[("writes-tree", "PASS")], 0),
    (
        "breaks-testbed",
        &[("damages-system", "PASS"), ("sees-clean-system", "PASS")],
        0,
    ),
    ("tests-directory", &[("elsewhere", "PASS")], 0),
    ("classes", &[("classified", "PASS")], 0),
    (
        "architecture",
        &[
            (
                "only-on-s390x",
                "SKIP Test lists explicitly supported architectures",
            ),
            ("not-on-s390x", "PASS"),
        ],
        2,
    ),
    (
        "isolation-machine",
        &[(
            "wants-machine",
            "SKIP Test restriction \"isolation-machine\" requires testbed capability",
        )],
        8,
    ),
    (
        "needs-reboot",
        &[(
            "reboots",
            "SKIP Test restriction \"needs-reboot\" requires testbed capability \"reboot\"",
        )],
        8,
    ),
    (
        "mixed-verdicts",
        &[
            ("passes", "PASS"),
            ("fails", "FAIL non-zero exit status 3"),
            ("skips", "SKIP exit status 77"),
        ],
        6,
    ),
    (
        "test-command-with-test-name",
        &[("named-inline-command", "PASS"), ("command1", "PASS")],
        0,
    ),
];

#[test]
fn fixtures_get_dep8_verdicts_and_exit_codes() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let mut failures = Vec::new();
    // -B: these tests install nothing, so their verdicts do not depend on
    // a build (the differential test runs them built too, beside autopkgtest).
    for (name, verdicts, code) in CASES {
        let ran = run(&bed, &fixture(name), &["-B"]);
        if ran.code != *code {
            failures.push(format!(
                "{name}: exit code {} (want {code})\n{}",
                ran.code,
                ran.summary()
            ));
        }
        for (test, want) in *verdicts {
            match ran.verdict(test) {
                Some(v) if v.starts_with(want) => {}
                got => failures.push(format!("{name}/{test}: {got:?} (want {want:?}...)")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn malformed_control_is_an_erroneous_package_naming_file_stanza_and_field() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let ran = run(&bed, &fixture("malformed-control"), &[]);
    assert_eq!(ran.code, 12, "{}", ran.stderr);
    let summary = ran.summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert!(lines[0].starts_with("blame: "), "{summary}");
    assert!(lines[1].starts_with("badpkg: InvalidControl test broken-depends: Test Depends field contains an invalid dependency"), "{summary}");
    assert!(lines[2].starts_with("erroneous package: "), "{summary}");
    assert!(
        ran.stderr
            .contains("debian/tests/control: stanza 2 (line 4), field Depends:"),
        "the error names file, stanza and field:\n{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

#[test]
fn unreachable_testbed_ends_with_16_and_a_summary_line() {
    let out = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_adt-runner"))
        .args([
            "run",
            "mawk",
            "--connect-timeout",
            "1",
            "--testbed",
            &format!("ssh:root@127.0.0.1:{port}"),
        ])
        .arg("-o")
        .arg(out.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(16),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary = std::fs::read_to_string(out.path().join("out/summary")).unwrap();
    assert!(
        summary.starts_with("testbed failure: cannot connect to root@127.0.0.1:"),
        "{summary}"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("out/exitcode")).unwrap(),
        "16\n"
    );
    // As autopkgtest: testinfo.json names the testbed even so.
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("out/testinfo.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["virt_server"], format!("ssh:root@127.0.0.1:{port}"));
}

#[test]
fn bad_arguments_exit_20_like_autopkgtest() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_adt-runner"))
        .args(["run", "mawk", "--testbed", "lxc:foo"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(20));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("expected ssh:[USER@]HOST[:PORT] or xen:IMAGE")
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_adt-runner"))
        .args(["run", "mawk", "--testbed", "ssh:127.0.0.1", "--trigger"])
        .arg("glibc 2.36-9")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(20));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("--trigger: trigger \"glibc 2.36-9\" is not SRC/VERSION"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn output_dir_holds_autopkgtest_files_and_artifacts() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let ran = run(
        &bed,
        &fixture("artifacts"),
        &[
            "--env",
            "ADT_FIXTURE_X=1",
            "--trigger",
            "glibc/2.36-9",
            "--trigger",
            "perl/1:5.36.0-7+deb12u1",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let out = ran.out.path().join("out");
    assert_eq!(
        ran.file("artifacts/result.txt"),
        "artifact from the artifacts fixture\n"
    );
    assert_eq!(ran.file("artifacts/sub/nested.txt"), "nested artifact\n");
    assert!(ran
        .file("writes-artifacts-stdout")
        .starts_with("wrote artifacts to "));
    assert!(
        !out.join("writes-artifacts-stderr").exists(),
        "an empty stderr leaves no file"
    );
    assert_eq!(ran.file("exitcode"), "0\n");
    assert!(ran.file("duration").trim().parse::<u64>().is_ok());
    assert!(ran
        .file("testpkg-version")
        .starts_with("adt-fixture-artifacts "));
    assert!(ran
        .file("testbed-packages")
        .lines()
        .any(|l| l.starts_with("dpkg\t")));
    assert!(out.join("writes-artifacts-packages").exists());
    let info: serde_json::Value = serde_json::from_str(&ran.file("testinfo.json")).unwrap();
    assert_eq!(info["virt_server"], bed.spec());
    // The triggers reach the test, and testinfo.json keeps them where
    // autopkgtest-cloud's results have them.
    assert_eq!(
        ran.file("artifacts/triggers.txt"),
        "glibc/2.36-9 perl/1:5.36.0-7+deb12u1\n"
    );
    assert_eq!(
        info["custom_environment"],
        serde_json::json!([
            "ADT_FIXTURE_X=1",
            "ADT_TEST_TRIGGERS=glibc/2.36-9 perl/1:5.36.0-7+deb12u1"
        ])
    );
    assert!(info["kernel_version"]
        .as_str()
        .unwrap()
        .starts_with("Linux"));
    assert!(ran.file("log").contains("writes-artifacts     PASS\n"));
}

#[test]
fn a_timeout_fails_the_test_and_kills_its_processes() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let started = std::time::Instant::now();
    let ran = run(&bed, &fixture("timeout"), &[]);
    assert_eq!(
        ran.verdict("sleeps-too-long").as_deref(),
        Some("FAIL timed out"),
        "{}",
        ran.summary()
    );
    assert_eq!(ran.code, 4);
    assert!(
        started.elapsed().as_secs() < 120,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        bed.processes_matching("^sleep 300"),
        0,
        "the test's sleep survived its timeout"
    );
}

#[test]
fn build_needed_test_reads_the_built_tree() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let ran = run(&bed, &fixture("build-needed-tree"), &[]);
    assert_eq!(
        ran.verdict("reads-built-file").as_deref(),
        Some("PASS"),
        "{}\n{}",
        ran.summary(),
        ran.stderr
    );
    assert_eq!(ran.code, 0);
    assert!(
        ran.file("log").contains("dpkg-buildpackage"),
        "the tree was built in the testbed"
    );
}

/// Builds the fixture's binary package on the host, as a buildd would.
fn build_on_host(name: &str, dest: &std::path::Path) -> std::path::PathBuf {
    let tree = dest.join(name);
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(fixture(name))
        .arg(&tree)
        .status()
        .unwrap();
    assert!(st.success(), "copying the fixture failed");
    let out = std::process::Command::new("dpkg-buildpackage")
        .args(["-us", "-uc", "-b"])
        .current_dir(&tree)
        .output()
        .expect("dpkg-buildpackage (tests/install-deps installs dpkg-dev and debhelper)");
    assert!(
        out.status.success(),
        "dpkg-buildpackage failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_dir(dest)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb beside the tree")
}

#[test]
fn a_given_binary_is_what_depends_at_installs_without_a_build() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let debs = tempfile::tempdir().unwrap();
    let deb = build_on_host("depends-at", debs.path());
    let bed = Bed::start();
    // --binary implies -B, as in autopkgtest: the tree is not built, so
    // only the given .deb can satisfy `@` (the archive has no
    // adt-fixture-depends-at).
    let ran = run(
        &bed,
        &fixture("depends-at"),
        &["--binary", deb.to_str().unwrap()],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.summary(), ran.stderr);
    assert_eq!(ran.verdict("binary-installed").as_deref(), Some("PASS"));
    assert!(
        !ran.file("log").contains("build needed for binaries"),
        "the tree was built although a .deb was given (which implies -B)"
    );
    assert!(ran
        .out
        .path()
        .join("out/binaries/adt-fixture-depends-at.deb")
        .exists());
    let without = run(&bed, &fixture("depends-at"), &["-B"]);
    assert_eq!(
        without.code,
        12,
        "without the binary `@` cannot be installed: {}",
        without.summary()
    );
}

#[test]
fn a_tree_that_is_not_built_leaves_dpkg_dev_to_its_tests_as_autopkgtest_does() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let has_dpkg_dev = |packages: &str| packages.lines().any(|l| l.starts_with("dpkg-dev\t"));
    // With -B nothing is built: the host unpacks the tree, and the testbed
    // still gets dpkg-dev, as autopkgtest's unpacking there gives it. The
    // test that uses it undeclared passes, and its -packages shows it.
    let ran = run(&bed, &fixture("undeclared-dpkg-dev"), &["-B"]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.summary(), ran.stderr);
    assert_eq!(ran.verdict("command1").as_deref(), Some("PASS"));
    assert!(ran.file("log").contains("build not needed"));
    assert!(
        has_dpkg_dev(&ran.file("command1-packages")),
        "{}",
        ran.file("command1-packages")
    );
    // Built for its binaries, the build installs dpkg-dev and the revert
    // after it takes it away: the same test fails.
    let built = run(&bed, &fixture("undeclared-dpkg-dev"), &[]);
    assert_eq!(built.code, 4, "{}\n{}", built.summary(), built.stderr);
    assert!(built.file("log").contains("Setting up dpkg-dev"));
    assert!(!has_dpkg_dev(&built.file("command1-packages")));
}

#[test]
fn a_tree_whose_build_fails_is_erroneous_even_when_no_test_installs_it() {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    // Like autopkgtest: a tree is built for its binaries unless -B.
    let ran = run(&bed, &fixture("build-fails"), &[]);
    assert_eq!(ran.code, 12, "{}\n{}", ran.summary(), ran.stderr);
    assert!(ran.file("log").contains("build needed for binaries"));
    assert!(
        ran.file("log").contains("this build fails on purpose"),
        "the build's own stderr is in the log"
    );
    assert!(ran.verdict("command1").is_none(), "no test ran");
    // The apt-utils fetch that ran beside the failed build was waited for:
    // the testbed (not reverted after the run) has no apt process left.
    assert_eq!(
        bed.processes_matching("[a]pt-get|[a]pt-utils-deb"),
        0,
        "the apt-utils fetch was left running after the failed build"
    );
    let skipped = run(&bed, &fixture("build-fails"), &["-B"]);
    assert_eq!(skipped.code, 0, "{}", skipped.summary());
    assert_eq!(skipped.verdict("command1").as_deref(), Some("PASS"));
}

#[test]
fn build_dependencies_a_revert_discards_are_installed_the_fast_way_and_tests_see_what_autopkgtest_leaves(
) {
    need_testbed!();
    let _heavy = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let bed = Bed::start();
    let ran = run(&bed, &fixture("pass-trivial"), &[]);
    assert_eq!(ran.code, 0, "{}\n{}", ran.summary(), ran.stderr);
    let log = ran.file("log");
    let (build, tests) = log
        .split_once("test command1: preparing testbed")
        .expect("the test was prepared");
    // The build environment is reverted away: man-db is not asked to index.
    assert!(
        build.contains("Not building database; man-db/auto-update is not 'true'"),
        "man-db indexed the throw-away build environment:\n{build}"
    );
    // The minbase testbed lacks them: apt installs them and configures the
    // throw-away package.
    assert!(
        build.contains("Setting up autopkgtest-satdep (0)"),
        "apt did not install the missing build dependencies:\n{build}"
    );
    // After the revert apt-utils (for apt-ftparchive) comes from the deb
    // fetched before it, installed by dpkg, not downloaded again by apt.
    assert!(
        tests.contains("Unpacking apt-utils"),
        "apt-utils was not installed for publishing:\n{tests}"
    );
    assert!(
        !tests
            .lines()
            .any(|l| l.starts_with("Get:") && l.contains(" apt-utils ")),
        "apt downloaded apt-utils after the revert:\n{tests}"
    );
    // What the test sees beyond the pristine testbed is what autopkgtest
    // leaves there (its pass-trivial run lists exactly apt-utils): no build
    // dependency survived.
    let extra: Vec<String> = ran
        .file("command1-packages")
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(extra, ["apt-utils"], "{}", ran.file("command1-packages"));

    // A testbed that has them all (here put there by a setup command, run
    // after every revert): dpkg configures the throw-away package without
    // apt, and the build works.
    let ready = run(
        &bed,
        &fixture("pass-trivial"),
        &["--setup-commands=apt-get install --assume-yes --no-install-recommends build-essential fakeroot debhelper"],
    );
    assert_eq!(ready.code, 0, "{}\n{}", ready.summary(), ready.stderr);
    let log = ready.file("log");
    let (build, _) = log
        .split_once("test command1: preparing testbed")
        .expect("the test was prepared");
    let (_, build) = build
        .split_once("build needed for binaries")
        .expect("a build");
    assert!(
        build.contains("Removing autopkgtest-satdep (0)")
            && !build.contains("Setting up autopkgtest-satdep")
            && !build.contains("Reading package lists"),
        "apt ran for build dependencies that were all installed:\n{build}"
    );
    assert!(
        build.contains("dpkg-deb: building package 'adt-fixture-pass-trivial'"),
        "no build:\n{build}"
    );

    // A testbed that cannot revert keeps what is installed into it, so its
    // build dependencies are installed exactly as autopkgtest installs them.
    let kept = run_without_revert(&bed, &fixture("pass-trivial"), &[]);
    assert_eq!(kept.code, 0, "{}\n{}", kept.summary(), kept.stderr);
    let log = kept.file("log");
    assert!(
        log.contains("Building database of manual pages"),
        "man-db did not index a build environment that stays:\n{log}"
    );
    assert!(
        kept.file("command1-packages")
            .lines()
            .any(|l| l.starts_with("debhelper\t")),
        "without a revert the build dependencies stay: {}",
        kept.file("command1-packages")
    );
}
