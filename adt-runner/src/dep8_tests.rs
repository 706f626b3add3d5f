//! Unit tests of `dep8` against the DEP-8 specification and the edge cases
//! of autopkgtest's testdesc.py.

use super::*;

const CONTROL: &str = "\
Source: foo
Build-Depends: debhelper-compat (= 13), libx-dev [amd64], liby-dev [i386], python3 <!nocheck>
Build-Depends-Indep: texinfo

Package: foo
Architecture: any
Recommends: ${misc:Recommends}, bar (>= 1)

Package: foo-doc
Architecture: all

Package: foo-amd64only
Architecture: amd64

Package: foo-udeb
Package-Type: udeb
Architecture: any
";

fn testbed(caps: &[&str]) -> Testbed {
    Testbed {
        arch: "amd64".into(),
        caps: caps.iter().map(|s| s.to_string()).collect(),
        ignore: BTreeSet::new(),
    }
}

fn run(text: &str, caps: &[&str]) -> Result<Parsed, InvalidControl> {
    let src = SourceControl::parse("debian/control", CONTROL).unwrap();
    parse("debian/tests/control", text, &src, &testbed(caps), &[])
}

fn ok(text: &str) -> Parsed {
    run(text, &["root-on-testbed", "has_internet"]).unwrap()
}

fn skips(p: &Parsed) -> Vec<(String, String)> {
    p.skipped
        .iter()
        .map(|s| (s.name.clone(), s.reason.clone()))
        .collect()
}

#[test]
fn tests_field_names_programs_in_debian_tests() {
    let p = ok("Tests: smoke, other  third\n");
    let names: Vec<_> = p.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["smoke", "other", "third"]);
    assert_eq!(p.tests[0].path.as_deref(), Some("debian/tests/smoke"));
    assert_eq!(p.tests[0].command, None);
}

#[test]
fn tests_directory_replaces_debian_tests() {
    let p = ok("Tests: t\nTests-Directory: upstream/tests\n");
    assert_eq!(p.tests[0].path.as_deref(), Some("upstream/tests/t"));
}

#[test]
fn test_commands_are_numbered_unless_named() {
    let p = ok("Test-Command: true\n\nTest-Command: false\nFeatures: test-name=named\n\nTest-Command: echo\n");
    let names: Vec<_> = p.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["command1", "named", "command2"]);
    assert_eq!(p.tests[0].command.as_deref(), Some("true"));
    assert!(p.tests[1].features.contains("test-name=named"));
}

#[test]
fn missing_depends_means_at_which_lists_own_debs_with_arch() {
    let p = ok("Tests: t\n");
    assert_eq!(
        p.tests[0].depends,
        ["foo", "foo-doc", "foo-amd64only [amd64]"]
    );
    assert_eq!(
        p.tests[0].synth_depends,
        [vec!["foo"], vec!["foo-doc"], vec!["foo-amd64only"]]
    );
}

#[test]
fn at_is_not_synthesised_for_foreign_architectures() {
    let src = SourceControl::parse("c", "Source: s\n\nPackage: p\nArchitecture: i386\n").unwrap();
    let tb = Testbed {
        arch: "amd64".into(),
        caps: BTreeSet::new(),
        ignore: BTreeSet::new(),
    };
    let p = parse("f", "Tests: t\n", &src, &tb, &[]).unwrap();
    assert_eq!(p.tests[0].depends, ["p [i386]"]);
    assert!(p.tests[0].synth_depends.is_empty());
}

#[test]
fn empty_depends_installs_nothing() {
    let p = ok("Tests: t\nDepends:\n");
    assert!(p.tests[0].depends.is_empty());
}

#[test]
fn builddeps_expand_reduced_to_testbed_plus_build_essential() {
    let p = ok("Tests: t\nDepends: @builddeps@, extra\n");
    assert_eq!(
        p.tests[0].depends,
        [
            "debhelper-compat (= 13)",
            "libx-dev",
            "python3",
            "texinfo",
            "build-essential",
            "extra"
        ]
    );
}

fn run_with(control: &str, text: &str) -> Result<Parsed, InvalidControl> {
    let src = SourceControl::parse("debian/control", control).unwrap();
    parse(
        "debian/tests/control",
        text,
        &src,
        &testbed(&["root-on-testbed"]),
        &[],
    )
}

#[test]
fn builddeps_keep_upper_bounds_and_read_arch_lists_like_dpkg() {
    let control = "Source: s\nBuild-Depends: foo (<< 2), bar (<= 3) <!nocheck>, \
                   old (< 2), baz [amd64 !i386], qux [!i386 amd64]\n\n\
                   Package: s\nArchitecture: any\n";
    let p = run_with(control, "Tests: t\nDepends: @builddeps@\n").unwrap();
    assert_eq!(
        p.tests[0].depends,
        [
            "foo (<< 2)",
            "bar (<= 3)",
            "old (<= 2)",
            "baz",
            "qux",
            "build-essential"
        ]
    );
}

#[test]
fn builddeps_dpkg_cannot_parse_make_the_package_erroneous() {
    let control = "Source: s\nBuild-Depends: foo (>= 1\n\nPackage: s\nArchitecture: any\n";
    // only a test that asks for them
    assert!(run_with(control, "Tests: t\n").is_ok());
    let e = run_with(control, "Tests: t\n\nTests: u\nDepends: @builddeps@\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test source: Invalid build dependencies"
    );
    assert!(
        e.detail().contains("stanza 2")
            && e.detail()
                .contains("Build-Depends: can't parse dependency foo (>= 1"),
        "{}",
        e.detail()
    );
}

#[test]
fn recommends_dpkg_cannot_parse_make_the_package_erroneous() {
    let control = "Source: s\n\nPackage: s\nArchitecture: any\nRecommends: r1:native\n";
    let e = run_with(control, "Tests: t\nDepends: @recommends@\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test source: Invalid Recommends"
    );
}

#[test]
fn illegal_arch_qualifier_of_an_own_package_is_erroneous() {
    let e = run("Tests: t\nDepends: foo [amd+64]\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test source: Invalid (Test-)Depends architecture qualifiers"
    );
}

#[test]
fn empty_version_is_left_to_apt_like_autopkgtest() {
    let p = ok("Tests: t\nDepends: foo (>=)\n");
    assert_eq!(p.tests[0].depends, ["foo (>=)"]);
}

#[test]
fn empty_tests_directory_is_the_tree() {
    let p = ok("Tests: t\nTests-Directory:\n");
    assert_eq!(p.tests[0].path.as_deref(), Some("t"));
    let p = ok("Tests: t\nTests-Directory: x/\n");
    assert_eq!(p.tests[0].path.as_deref(), Some("x/t"));
}

#[test]
fn recommends_expand_without_substitution_variables() {
    let p = ok("Tests: t\nDepends: @recommends@\n");
    assert_eq!(p.tests[0].depends, ["bar (>= 1)"]);
}

#[test]
fn needs_recommends_adds_recommends_to_default_at() {
    let p = ok("Tests: t\nRestrictions: needs-recommends\n");
    assert_eq!(
        p.tests[0].depends,
        ["foo", "foo-doc", "foo-amd64only [amd64]", "bar (>= 1)"]
    );
}

#[test]
fn own_packages_in_alternatives_are_synthesised() {
    let p = ok("Tests: t\nDepends: foo | foo-doc, other\n");
    assert_eq!(p.tests[0].depends, ["foo | foo-doc", "other"]);
    assert_eq!(p.tests[0].synth_depends, [vec!["foo", "foo-doc"]]);
}

#[test]
fn needs_sudo_implies_sudo_dependency() {
    let p = ok("Tests: t\nDepends: a\nRestrictions: needs-sudo\n");
    assert_eq!(p.tests[0].depends, ["a", "sudo"]);
}

#[test]
fn invalid_dependency_is_invalid_control_naming_the_first_test() {
    let e = run("Tests: first second\nDepends: Bad!Name\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test first: Test Depends field contains an invalid dependency `Bad!Name'"
    );
    assert_eq!(e.origin.field.as_deref(), Some("Depends"));
    assert!(
        e.detail()
            .starts_with("debian/tests/control: stanza 1 (line 1), field Depends:"),
        "{}",
        e.detail()
    );
}

#[test]
fn invalid_version_is_invalid_control() {
    let e = run("Test-Command: true\nDepends: foo (>= 1 2)\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test true: Test Depends field contains dependency `foo (>= 1 2)' with an invalid version"
    );
}

#[test]
fn only_the_first_foreign_alternative_is_checked_like_autopkgtest() {
    // autopkgtest stops at the first alternative that is not its own
    assert!(run("Tests: t\nDepends: other | Bad!\n", &[]).is_ok());
    assert!(run("Tests: t\nDepends: foo | Bad!\n", &[]).is_err());
}

#[test]
fn stanza_without_tests_or_command_is_invalid() {
    let e = run("Tests: a\n\nDepends: x\n", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "InvalidControl test *: missing \"Tests\" or \"Test-Command\" field"
    );
    assert_eq!(e.origin.stanza, 2);
    assert_eq!(e.origin.line, 3);
}

#[test]
fn tests_and_test_command_together_are_invalid() {
    let e = run("Tests: a\nTest-Command: true\n", &[]).unwrap_err();
    assert_eq!(
        e.message,
        "Only one of \"Tests\" or \"Test-Command\" may be given"
    );
}

#[test]
fn empty_tests_field_is_invalid() {
    let e = run("Tests: ,\n", &[]).unwrap_err();
    assert_eq!(e.message, "\"Tests\" field is empty");
}

#[test]
fn test_name_feature_errors() {
    let cases = [
        (
            "Test-Command: true\nFeatures: test-name\n",
            "test-name feature with no argument",
        ),
        (
            "Test-Command: true\nFeatures: test-name=a test-name=b\n",
            "only one test-name feature allowed",
        ),
        (
            "Tests: t\nFeatures: test-name=a\n",
            "test-name feature incompatible with Tests",
        ),
    ];
    for (text, msg) in cases {
        assert_eq!(run(text, &[]).unwrap_err().message, msg, "{text}");
    }
}

#[test]
fn unknown_features_and_classes_are_ignored() {
    let p = ok("Tests: t\nFeatures: shiny\nClasses: desktop, graphics-driver\n");
    assert_eq!(p.tests.len(), 1);
    assert_eq!(p.tests[0].classes, ["desktop", "graphics-driver"]);
}

#[test]
fn unknown_restriction_skips_the_test() {
    let p = ok("Tests: t\nRestrictions: allow-stderr, frobnicate\n");
    assert!(p.tests.is_empty());
    assert_eq!(
        skips(&p),
        [("t".into(), "unknown restriction frobnicate".into())]
    );
}

#[test]
fn hint_testsuite_triggers_never_runs() {
    let p = ok("Tests: t\nDepends: foo\nRestrictions: hint-testsuite-triggers\n");
    assert!(p.tests.is_empty());
    assert_eq!(
        skips(&p),
        [(
            "t".into(),
            "unknown restriction hint-testsuite-triggers".into()
        )]
    );
}

#[test]
fn unknown_field_skips_every_test_of_the_stanza() {
    let p = ok("Tests: a b\nX-Extra: 1\n");
    assert_eq!(
        skips(&p),
        [
            ("a".into(), "unknown field X-extra".into()),
            ("b".into(), "unknown field X-extra".into())
        ]
    );
}

#[test]
fn restrictions_needing_missing_capabilities_skip() {
    let cases = [
        ("breaks-testbed", "Test restriction \"breaks-testbed\" requires testbed capability \"revert-full-system\""),
        ("needs-reboot", "Test restriction \"needs-reboot\" requires testbed capability \"reboot\""),
        ("isolation-machine", "Test restriction \"isolation-machine\" requires testbed capability \"isolation-machine\""),
        (
            "isolation-container",
            "Test restriction \"isolation-container\" requires testbed capability \"isolation-container\" and/or \"isolation-machine\"",
        ),
        ("needs-root", "Test restriction \"needs-root\" requires testbed capability \"root-on-testbed\""),
    ];
    for (r, msg) in cases {
        let p = run(&format!("Tests: t\nRestrictions: {r}\n"), &[]).unwrap();
        assert_eq!(skips(&p), [("t".into(), msg.into())], "{r}");
    }
}

#[test]
fn ignored_restrictions_do_not_skip_but_still_count() {
    let src = SourceControl::parse("debian/control", CONTROL).unwrap();
    let mut tb = testbed(&[]);
    tb.ignore = ["needs-reboot", "unknown-thing"].map(String::from).into();
    let text = "Tests: a\nRestrictions: needs-reboot, unknown-thing\n\nTests: b\nRestrictions: needs-reboot, isolation-machine\n";
    let p = parse("debian/tests/control", text, &src, &tb, &[]).unwrap();
    // `a` runs, still marked needs-reboot; `b` skips for what is not ignored
    assert_eq!(p.tests.len(), 1);
    assert_eq!(p.tests[0].name, "a");
    assert!(p.tests[0].has("needs-reboot"));
    assert_eq!(
        skips(&p),
        [(
            "b".into(),
            "Test restriction \"isolation-machine\" requires testbed capability \"isolation-machine\"".into()
        )]
    );
}

#[test]
fn isolation_container_is_satisfied_by_isolation_machine() {
    let p = run(
        "Tests: t\nRestrictions: isolation-container\n",
        &["isolation-machine"],
    )
    .unwrap();
    assert_eq!(p.tests.len(), 1);
}

#[test]
fn runtime_restrictions_do_not_skip_at_parse_time() {
    let r = "allow-stderr build-needed flaky needs-internet needs-sudo rw-build-tree skip-not-installable skippable superficial";
    let p = ok(&format!("Tests: t\nRestrictions: {r}\n"));
    assert_eq!(p.tests.len(), 1, "{:?}", p.skipped);
}

#[test]
fn architecture_field_is_honoured() {
    let cases = [
        ("amd64", None),
        ("any", None),
        ("linux-any", None),
        ("!i386", None),
        ("all", Some("Arch 'all' not allowed in Architecture field")),
        ("!amd64", Some("Test declares architecture as not supported: amd64")),
        ("i386 armhf", Some("Test lists explicitly supported architectures, but the current architecture amd64 isn't listed.")),
        (
            "i386 !armhf",
            Some("It is not permitted for some archs to be prepended by an exclamation mark while others aren't"),
        ),
    ];
    for (arch, skip) in cases {
        let p = ok(&format!("Tests: t\nArchitecture: {arch}\n"));
        let got = p.skipped.first().map(|s| s.reason.as_str());
        assert_eq!(got, skip, "Architecture: {arch}");
    }
}

#[test]
fn slash_in_test_name_skips() {
    let p = ok("Test-Command: true\nFeatures: test-name=a/b\n");
    assert_eq!(
        skips(&p),
        [("a/b".into(), "test name may not contain / character".into())]
    );
}

#[test]
fn only_tests_hides_skips_of_other_tests() {
    let src = SourceControl::parse("c", CONTROL).unwrap();
    let only = vec!["b".to_string()];
    let text = "Tests: a b\nRestrictions: bogus\n\nTest-Command: true\nRestrictions: bogus\n";
    let p = parse("f", text, &src, &testbed(&[]), &only).unwrap();
    assert_eq!(
        skips(&p),
        [("b".into(), "unknown restriction bogus".into())]
    );
}

#[test]
fn skipped_command_still_counts() {
    let p = ok("Test-Command: a\nRestrictions: bogus\n\nTest-Command: b\n");
    assert_eq!(p.skipped[0].name, "command1");
    assert_eq!(p.tests[0].name, "command2");
}

#[test]
fn malformed_control_file_is_invalid_control_with_position() {
    let e = run("Tests: a\n\nTests: b\nthis is not a field\n", &[]).unwrap_err();
    assert_eq!(e.test, "*");
    assert_eq!((e.origin.stanza, e.origin.line), (2, 4));
    assert!(e.detail().contains("debian/tests/control"));
}

#[test]
fn udebs_are_not_test_dependencies() {
    let src = SourceControl::parse("c", CONTROL).unwrap();
    assert!(!src.package_names.iter().any(|p| p == "foo-udeb"));
}
