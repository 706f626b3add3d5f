//! adt-runner's DEP-8 parser against the reference: autopkgtest 5.28's own
//! testdesc.py (installed with the `autopkgtest` package) parses the same
//! control files, and the tests, their Depends and the parse-time SKIP
//! reports (or the InvalidControl message) must be the same.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use adt_runner::dep8::{self, SourceControl, Testbed};

const TESTDESC: &str = "/usr/share/autopkgtest/lib/testdesc.py";

const CONTROL: &str = "\
Source: foo
Build-Depends: debhelper-compat (= 13), libx-dev [amd64], liby-dev [i386], python3 <!nocheck>, gdb <cross>
Build-Depends-Indep: texinfo

Package: foo
Architecture: any
Recommends: ${misc:Recommends}, bar (>= 1), baz [i386]

Package: foo-doc
Architecture: all

Package: foo-amd64only
Architecture: amd64

Package: foo-udeb
Package-Type: udeb
Architecture: any
";

/// debian/tests/control texts, each an edge case of the spec or of
/// testdesc.py.
const CASES: &[&str] = &[
    "Tests: smoke\n",
    "Tests: a, b  c\nDepends: @, extra (>= 1.0-1)\nRestrictions: allow-stderr needs-root\n",
    "Test-Command: true\n\nTest-Command: false\nFeatures: test-name=named\n\nTest-Command: echo\n",
    "Tests: t\nDepends: @builddeps@\n",
    "Tests: t\nDepends: @recommends@, foo\n",
    "Tests: t\nRestrictions: needs-recommends\n",
    "Tests: t\nDepends: foo | foo-doc, other [amd64]\n",
    "Tests: t\nDepends:\n",
    "Tests: t\nDepends: a,\n  b,\n  c\n",
    "# comment\nTests: t # trailing\n # only comment\nDepends: x\n",
    "Tests: t\nRestrictions: needs-sudo\n",
    "Tests: t\nRestrictions: frobnicate\n",
    "Tests: t\nDepends: foo\nRestrictions: hint-testsuite-triggers\n",
    "Tests: t\nRestrictions: skip-not-installable, flaky superficial skippable\n",
    "Tests: a b\nX-Extra: 1\n",
    "Tests: t\nRestrictions: breaks-testbed\n",
    "Tests: t\nRestrictions: isolation-container\n",
    "Tests: t\nRestrictions: isolation-machine\n",
    "Tests: t\nRestrictions: needs-reboot\n",
    "Tests: t\nArchitecture: all\n",
    "Tests: t\nArchitecture: !amd64\n",
    "Tests: t\nArchitecture: i386 armhf\n",
    "Tests: t\nArchitecture: linux-any\n",
    "Tests: t\nArchitecture: i386 !armhf\n",
    "Test-Command: true\nFeatures: test-name=a/b\n",
    "Test-Command: a\nRestrictions: bogus\n\nTest-Command: b\n",
    "Tests: t\nTests-Directory: upstream/tests\nClasses: desktop\nFeatures: shiny\n",
    "Tests: first second\nDepends: Bad!Name\n",
    "Test-Command: true\nDepends: foo (>= 1 2)\n",
    "Tests: t\nDepends: other | Bad!\n",
    "Tests: a\n\nDepends: x\n",
    "Tests: a\nTest-Command: true\n",
    "Tests: ,\n",
    "Test-Command: true\nFeatures: test-name\n",
    "Test-Command: true\nFeatures: test-name=a test-name=b\n",
    "Tests: t\nFeatures: test-name=a\n",
    "Tests: t\nDepends: pkg:any (>= 2), pkg2:native\n",
];

fn python() -> Option<&'static str> {
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import debian.deb822"])
        .output()
        .is_ok_and(|o| o.status.success());
    (ok && Path::new(TESTDESC).exists()).then_some("/usr/bin/python3")
}

const SCRIPT: &str = r#"
import json, sys
sys.path.insert(0, '/usr/share/autopkgtest/lib')
import adtlog, testdesc
reports = []
adtlog.report = lambda name, result: reports.append([name, result])
srcdir, caps = sys.argv[1], sys.argv[2].split(',')
ignore = [r for r in sys.argv[3].split(',') if r]
try:
    tests, _ = testdesc.parse_debian_source(srcdir, caps, 'amd64', auto_control=False,
                                            ignore_restrictions=ignore)
    out = {'tests': [[t.name, t.path, t.command, sorted(t.restrictions), [d for d in t.depends if d]] for t in tests]}
except testdesc.InvalidControl as e:
    out = {'invalid': str(e)}
out['reports'] = reports
print(json.dumps(out))
"#;

fn reference(py: &str, control: &str, caps: &[&str], ignore: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("debian/tests")).unwrap();
    std::fs::write(dir.path().join("debian/control"), CONTROL).unwrap();
    std::fs::write(dir.path().join("debian/tests/control"), control).unwrap();
    let o = Command::new(py)
        .args(["-c", SCRIPT])
        .arg(dir.path())
        .arg(caps.join(","))
        .arg(ignore.join(","))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "testdesc.py failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ours(control: &str, caps: &[&str], ignore: &[&str]) -> serde_json::Value {
    let sc = SourceControl::parse("debian/control", CONTROL).unwrap();
    let tb = Testbed {
        arch: "amd64".into(),
        caps: caps.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        ignore: ignore.iter().map(|s| s.to_string()).collect(),
    };
    let mut out = serde_json::Map::new();
    match dep8::parse("debian/tests/control", control, &sc, &tb, &[]) {
        Ok(p) => {
            let tests: Vec<serde_json::Value> = p
                .tests
                .iter()
                .map(|t| serde_json::json!([t.name, t.path, t.command, t.restrictions, t.depends]))
                .collect();
            out.insert("tests".into(), tests.into());
            let reports: Vec<serde_json::Value> = p
                .skipped
                .iter()
                .map(|s| serde_json::json!([s.name, format!("SKIP {}", s.reason)]))
                .collect();
            out.insert("reports".into(), reports.into());
        }
        Err(e) => {
            out.insert("invalid".into(), e.to_string().into());
            out.insert("reports".into(), serde_json::json!([]));
        }
    }
    out.into()
}

#[test]
fn parse_agrees_with_autopkgtests_testdesc() {
    let Some(py) = python() else {
        adt_systest::skip("autopkgtest's testdesc.py or python3-debian is not installed");
        return;
    };
    let mut differences = Vec::new();
    let plain = &["root-on-testbed", "has_internet"][..];
    let full = &[
        "root-on-testbed",
        "revert",
        "revert-full-system",
        "isolation-machine",
    ][..];
    // the last: --ignore-restrictions with a missing capability's
    // restriction, an unknown one and one the testbed meets anyway
    let ignored = &["needs-reboot", "frobnicate", "isolation-machine"][..];
    for (caps, ignore) in [(plain, &[][..]), (full, &[][..]), (plain, ignored)] {
        for case in CASES {
            let (want, got) = (reference(py, case, caps, ignore), ours(case, caps, ignore));
            if want != got {
                differences.push(format!(
                    "control:\n{case}caps {caps:?} ignoring {ignore:?}\n  testdesc.py: {want}\n  adt-runner:  {got}"
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n\n"));
}
