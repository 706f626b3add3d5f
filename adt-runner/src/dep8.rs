//! DEP-8: from debian/control and debian/tests/control to the list of tests
//! to run and the tests skipped at parse time, decided as autopkgtest's
//! `testdesc.py` decides them (same order of checks, same messages).
//!
//! Not for: running tests (`run`), installing their dependencies (`apt`),
//! or the syntax of control files (`deb822`) and dependency fields (`deps`).

use std::collections::BTreeSet;
use std::fmt;

use crate::deb822::{self, capwords, Stanza};
use crate::deps;

/// Restrictions autopkgtest 5.28 knows; any other one skips the test.
/// (`hint-testsuite-triggers` is not among them: such a test is skipped as
/// an unknown restriction, which is what the spec wants: it never runs.)
pub const KNOWN_RESTRICTIONS: &[&str] = &[
    "allow-stderr",
    "breaks-testbed",
    "build-needed",
    "flaky",
    "isolation-container",
    "isolation-machine",
    "needs-internet",
    "needs-reboot",
    "needs-recommends",
    "needs-root",
    "needs-sudo",
    "rw-build-tree",
    "skip-not-installable",
    "skippable",
    "superficial",
];

const KNOWN_FIELDS: &[&str] = &[
    "Tests",
    "Test-command",
    "Restrictions",
    "Features",
    "Depends",
    "Tests-directory",
    "Classes",
    "Architecture",
];

/// Where a piece of control data came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: String,
    pub stanza: usize,
    pub line: usize,
    pub field: Option<String>,
}

/// Control data autopkgtest refuses (`InvalidControl`): the package is
/// erroneous and the run ends with exit code 12.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidControl {
    /// The test name autopkgtest reports (`*` for a whole stanza).
    pub test: String,
    pub message: String,
    pub origin: Origin,
}

impl InvalidControl {
    /// The message with file, stanza and field, for the log.
    pub fn detail(&self) -> String {
        let o = &self.origin;
        let field = o
            .field
            .as_deref()
            .map(|f| format!(", field {f}"))
            .unwrap_or_default();
        format!(
            "{}: stanza {} (line {}){}: {}",
            o.file, o.stanza, o.line, field, self.message
        )
    }
}

impl fmt::Display for InvalidControl {
    /// autopkgtest's wording, which goes to the summary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InvalidControl test {}: {}", self.test, self.message)
    }
}

impl std::error::Error for InvalidControl {}

impl From<deb822::SyntaxError> for InvalidControl {
    fn from(e: deb822::SyntaxError) -> Self {
        InvalidControl {
            test: "*".into(),
            message: e.message.clone(),
            origin: Origin {
                file: e.file,
                stanza: e.stanza,
                line: e.line,
                field: None,
            },
        }
    }
}

/// One test, as autopkgtest's `testdesc.Test` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    pub name: String,
    /// Path of the test program relative to the source tree.
    pub path: Option<String>,
    /// The `Test-Command`.
    pub command: Option<String>,
    pub restrictions: BTreeSet<String>,
    pub features: BTreeSet<String>,
    pub classes: Vec<String>,
    /// Or-groups to install, `@`/`@builddeps@`/`@recommends@` expanded.
    pub depends: Vec<String>,
    /// Binary packages of this source that must end up really installed
    /// (not merely provided); an inner list is a set of alternatives.
    pub synth_depends: Vec<Vec<String>>,
}

impl Test {
    pub fn has(&self, restriction: &str) -> bool {
        self.restrictions.contains(restriction)
    }
}

/// A test skipped while parsing, reported as `SKIP <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// What the parse gives: tests to run, and skips in report order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub tests: Vec<Test>,
    pub skipped: Vec<Skipped>,
}

/// What the testbed offers, as far as parsing cares.
#[derive(Debug, Clone)]
pub struct Testbed {
    /// `dpkg --print-architecture` of the testbed.
    pub arch: String,
    /// autopkgtest capability names (`root-on-testbed`, `revert`, ...).
    pub caps: BTreeSet<String>,
    /// Restrictions that do not keep a test from running here
    /// (`--ignore-restrictions`).
    pub ignore: BTreeSet<String>,
}

/// The parts of debian/control that test Depends refer to.
#[derive(Debug, Clone, Default)]
pub struct SourceControl {
    /// Binary packages, `name` or `name [arch]` (udebs left out).
    pub packages: Vec<String>,
    pub package_names: Vec<String>,
    /// Build-Depends, -Indep and -Arch joined as autopkgtest joins them.
    pub build_depends: String,
    /// All Recommends fields, joined with commas.
    pub recommends: String,
    /// The source stanza.
    pub source: Option<Stanza>,
}

impl SourceControl {
    /// Reads `text`, the content of debian/control.
    pub fn parse(file: &str, text: &str) -> Result<Self, InvalidControl> {
        let mut sc = SourceControl::default();
        for st in deb822::parse(file, text)? {
            if let Some(r) = st.get("Recommends") {
                sc.recommends.push_str(r);
                sc.recommends.push(',');
            }
            let Some(name) = st.get("Package") else {
                sc.add_build_depends(&st);
                sc.source.get_or_insert(st);
                continue;
            };
            let is_deb = |f: &str| st.get(f).unwrap_or("deb") == "deb";
            if !is_deb("Xc-package-type") || !is_deb("Package-type") {
                continue;
            }
            match st.get("Architecture").unwrap_or("any") {
                "all" | "any" => sc.packages.push(name.to_string()),
                arch => sc.packages.push(format!("{name} [{arch}]")),
            }
            sc.package_names.push(name.to_string());
        }
        Ok(sc)
    }

    fn add_build_depends(&mut self, st: &Stanza) {
        if let Some(v) = st.get("Build-Depends") {
            self.build_depends.push_str(v);
        }
        for f in ["Build-Depends-Indep", "Build-Depends-Arch"] {
            if let Some(v) = st.get(f) {
                self.build_depends.push_str(", ");
                self.build_depends.push_str(v);
            }
        }
    }

    /// `@builddeps@` for `arch`: the build dependencies reduced to the
    /// testbed, then `build-essential`.
    /// An error says why Dpkg cannot parse them.
    pub fn builddeps(&self, arch: &str) -> Result<Vec<String>, String> {
        let mut d = deps::reduce(&self.build_depends, arch, true)?;
        d.push("build-essential".into());
        Ok(d)
    }

    /// `@recommends@` for `arch`: every Recommends of debian/control less
    /// substitution variables, reduced to the testbed like Build-Depends
    /// (but `:native` is not allowed). An error says why Dpkg cannot parse
    /// them.
    pub fn recommends(&self, arch: &str) -> Result<Vec<String>, String> {
        deps::reduce(&deps::filter_variables(&self.recommends), arch, false)
    }
}

/// An `Unsupported` of autopkgtest: the test is skipped with this reason.
struct Unsupported(String, String);

fn split_list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .replace(',', " ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

struct Ctx<'a> {
    file: &'a str,
    source: &'a SourceControl,
    testbed: &'a Testbed,
    only: &'a [String],
}

impl Ctx<'_> {
    fn invalid(
        &self,
        st: &Stanza,
        test: &str,
        field: Option<&str>,
        message: String,
    ) -> InvalidControl {
        InvalidControl {
            test: test.to_string(),
            message,
            origin: Origin {
                file: self.file.to_string(),
                stanza: st.number,
                line: st.line,
                field: field.map(String::from),
            },
        }
    }

    /// An `InvalidControl('source', message)` of autopkgtest, raised while
    /// expanding the Depends of stanza `st` from debian/control's `field`;
    /// `cause` (what Dpkg could not parse) goes with the field, for the log.
    fn source_invalid(
        &self,
        st: &Stanza,
        message: &str,
        field: &str,
        cause: String,
    ) -> InvalidControl {
        let field = format!("Depends (from debian/control {field}: {cause})");
        self.invalid(st, "source", Some(&field), message.to_string())
    }

    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }
}

/// Parses a debian/tests/control (`text`, read from `file`).
///
/// `only` restricts which parse-time skips are reported, like
/// autopkgtest's `--test-name`.
pub fn parse(
    file: &str,
    text: &str,
    source: &SourceControl,
    testbed: &Testbed,
    only: &[String],
) -> Result<Parsed, InvalidControl> {
    let ctx = Ctx {
        file,
        source,
        testbed,
        only,
    };
    let mut parsed = Parsed::default();
    let mut command_counter = 0;
    for mut st in deb822::parse(file, text)? {
        let restrictions: BTreeSet<String> =
            split_list(st.get("Restrictions")).into_iter().collect();
        if restrictions.contains("needs-recommends") {
            let d = format!("{},@recommends@", st.get("Depends").unwrap_or("@"));
            st.set("Depends", d);
        }
        let (features, test_name) = features(&ctx, &st)?;
        let r = if st.has("Tests") {
            tests_stanza(&ctx, &st, &restrictions, &features, test_name, &mut parsed)
        } else if st.has("Test-Command") {
            command_stanza(
                &ctx,
                &st,
                &restrictions,
                &features,
                test_name,
                &mut command_counter,
            )
        } else {
            return Err(ctx.invalid(
                &st,
                "*",
                None,
                "missing \"Tests\" or \"Test-Command\" field".into(),
            ));
        };
        match r? {
            Ok(Some(t)) => parsed.tests.push(t),
            Ok(None) => {}
            Err(Unsupported(name, reason)) if only.is_empty() => {
                parsed.skipped.push(Skipped { name, reason })
            }
            Err(_) => {}
        }
    }
    Ok(parsed)
}

fn features(ctx: &Ctx, st: &Stanza) -> Result<(BTreeSet<String>, Option<String>), InvalidControl> {
    let mut features = BTreeSet::new();
    let mut test_name = None;
    for f in split_list(st.get("Features")) {
        match f.split_once('=') {
            _ if f != "test-name" && !f.starts_with("test-name=") => {}
            None => {
                return Err(ctx.invalid(
                    st,
                    "*",
                    Some("Features"),
                    "test-name feature with no argument".into(),
                ));
            }
            Some(_) if test_name.is_some() => {
                return Err(ctx.invalid(
                    st,
                    "*",
                    Some("Features"),
                    "only one test-name feature allowed".into(),
                ));
            }
            Some((_, v)) => test_name = Some(v.to_string()),
        }
        features.insert(f);
    }
    Ok((features, test_name))
}

type StanzaResult = Result<Result<Option<Test>, Unsupported>, InvalidControl>;

fn tests_stanza(
    ctx: &Ctx,
    st: &Stanza,
    restrictions: &BTreeSet<String>,
    features: &BTreeSet<String>,
    test_name: Option<String>,
    parsed: &mut Parsed,
) -> StanzaResult {
    let names = split_list(st.get("Tests"));
    if names.is_empty() {
        return Err(ctx.invalid(st, "*", Some("Tests"), "\"Tests\" field is empty".into()));
    }
    let (depends, synth) = parse_depends(ctx, st, &names[0])?;
    if st.has("Test-Command") {
        let m = "Only one of \"Tests\" or \"Test-Command\" may be given".into();
        return Err(ctx.invalid(st, "*", Some("Test-Command"), m));
    }
    if test_name.is_some() {
        let m = "test-name feature incompatible with Tests".into();
        return Err(ctx.invalid(st, "*", Some("Features"), m));
    }
    let dir = st.get("Tests-Directory").unwrap_or("debian/tests");
    for n in &names {
        let test = Test {
            name: n.clone(),
            path: Some(path_join(dir, n)),
            command: None,
            restrictions: restrictions.clone(),
            features: features.clone(),
            classes: split_list(st.get("Classes")),
            depends: depends.clone(),
            synth_depends: synth.clone(),
        };
        match check(ctx, st, test) {
            Ok(t) => parsed.tests.push(t),
            Err(Unsupported(name, reason)) if ctx.wanted(n) => {
                parsed.skipped.push(Skipped { name, reason })
            }
            Err(_) => {}
        }
    }
    Ok(Ok(None))
}

fn command_stanza(
    ctx: &Ctx,
    st: &Stanza,
    restrictions: &BTreeSet<String>,
    features: &BTreeSet<String>,
    test_name: Option<String>,
    counter: &mut usize,
) -> StanzaResult {
    let command = st.get("Test-Command").unwrap_or_default().to_string();
    let (depends, synth) = parse_depends(ctx, st, &command)?;
    let test = Test {
        name: test_name.unwrap_or_else(|| {
            *counter += 1;
            format!("command{counter}")
        }),
        path: None,
        command: Some(command),
        restrictions: restrictions.clone(),
        features: features.clone(),
        classes: split_list(st.get("Classes")),
        depends,
        synth_depends: synth,
    };
    Ok(check(ctx, st, test).map(Some))
}

/// The per-test checks, in autopkgtest's order: unknown fields,
/// architecture, name, restrictions against the testbed.
fn check(ctx: &Ctx, st: &Stanza, mut test: Test) -> Result<Test, Unsupported> {
    let name = test.name.clone();
    let unsupported = |m: String| Unsupported(name.clone(), m);
    let mut unknown: Vec<String> = st
        .fields
        .iter()
        .map(|(k, _)| capwords(k))
        .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if let Some(k) = unknown.first() {
        return Err(unsupported(format!("unknown field {k}")));
    }
    check_architecture(&ctx.testbed.arch, &split_list(st.get("Architecture")))
        .map_err(unsupported)?;
    if name.contains('/') {
        return Err(unsupported("test name may not contain / character".into()));
    }
    if test.has("needs-sudo") && !test.depends.iter().any(|d| d == "sudo") {
        test.depends.push("sudo".into());
    }
    let effective = test
        .restrictions
        .difference(&ctx.testbed.ignore)
        .cloned()
        .collect();
    check_caps(&effective, &ctx.testbed.caps).map_err(unsupported)?;
    Ok(test)
}

/// Python's `os.path.join(dir, name)`, as autopkgtest builds a test's
/// path: an empty `Tests-Directory:` is the tree itself.
fn path_join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// autopkgtest's `_check_architecture`.
pub fn check_architecture(host: &str, arches: &[String]) -> Result<(), String> {
    if arches.iter().any(|a| a == "all") {
        return Err("Arch 'all' not allowed in Architecture field".into());
    }
    if arches.is_empty() || arches == ["any"] {
        return Ok(());
    }
    let (mut any_negative, mut any_positive) = (false, false);
    for a in arches {
        if let Some(neg) = a.strip_prefix('!') {
            any_negative = true;
            if deps::arch_matches(host, neg) {
                return Err(format!(
                    "Test declares architecture as not supported: {host}"
                ));
            }
        } else {
            any_positive = true;
        }
    }
    if !any_positive {
        return Ok(());
    }
    if any_negative {
        return Err("It is not permitted for some archs to be prepended by an exclamation mark while others aren't".into());
    }
    if arches.iter().any(|a| deps::arch_matches(host, a)) {
        Ok(())
    } else {
        Err(format!(
            "Test lists explicitly supported architectures, but the current architecture {host} isn't listed."
        ))
    }
}

/// autopkgtest's `check_testbed_compat`: unknown restrictions first, then
/// restrictions whose testbed capability is missing (`restrictions` less
/// the ignored ones).
pub fn check_caps(restrictions: &BTreeSet<String>, caps: &BTreeSet<String>) -> Result<(), String> {
    if let Some(r) = restrictions
        .iter()
        .find(|r| !KNOWN_RESTRICTIONS.contains(&r.as_str()))
    {
        return Err(format!("unknown restriction {r}"));
    }
    for r in restrictions {
        let need = match r.as_str() {
            "breaks-testbed" => "revert-full-system",
            "needs-internet" => "has_internet",
            "needs-reboot" => "reboot",
            "needs-root" => "root-on-testbed",
            "isolation-machine" => "isolation-machine",
            "isolation-container" => {
                if caps.contains("isolation-container") || caps.contains("isolation-machine") {
                    continue;
                }
                return Err("Test restriction \"isolation-container\" requires testbed capability \"isolation-container\" and/or \"isolation-machine\"".into());
            }
            _ => continue,
        };
        if !caps.contains(need) {
            return Err(format!(
                "Test restriction \"{r}\" requires testbed capability \"{need}\""
            ));
        }
    }
    Ok(())
}

/// autopkgtest's `_parse_debian_depends`: split, check, expand.
fn parse_depends(
    ctx: &Ctx,
    st: &Stanza,
    testname: &str,
) -> Result<(Vec<String>, Vec<Vec<String>>), InvalidControl> {
    let arch = &ctx.testbed.arch;
    let (mut out, mut synth) = (Vec::new(), Vec::new());
    for group in st.get("Depends").unwrap_or("@").split(',').map(str::trim) {
        match group {
            "" => {}
            "@" => {
                for p in &ctx.source.packages {
                    out.push(p.clone());
                    synth.extend(synthesize(ctx, st, p)?.map(|s| vec![s]));
                }
            }
            // autopkgtest gives up on the package when Dpkg cannot parse
            // the field; the log says what it could not parse.
            "@builddeps@" => out.extend(ctx.source.builddeps(arch).map_err(|e| {
                ctx.source_invalid(st, "Invalid build dependencies", "Build-Depends", e)
            })?),
            "@recommends@" => out.extend(
                ctx.source
                    .recommends(arch)
                    .map_err(|e| ctx.source_invalid(st, "Invalid Recommends", "Recommends", e))?,
            ),
            _ => {
                let alts = own_alternatives(ctx, st, testname, group)?;
                if !alts.is_empty() {
                    synth.push(alts);
                }
                out.push(group.to_string());
            }
        }
    }
    Ok((out, synth))
}

/// The alternatives of `group` that are binaries of this source (all of
/// them must be, else none counts), checking each one's syntax on the way.
fn own_alternatives(
    ctx: &Ctx,
    st: &Stanza,
    testname: &str,
    group: &str,
) -> Result<Vec<String>, InvalidControl> {
    let mut alts = Vec::new();
    for alt in group.split('|') {
        let dep = alt.trim();
        let Some(d) = deps::parse_simple(dep) else {
            let m = format!("Test Depends field contains an invalid dependency `{dep}'");
            return Err(ctx.invalid(st, testname, Some("Depends"), m));
        };
        // an empty version is not checked (autopkgtest: `if
        // m.group("version")`); apt refuses it at install time
        if d.version
            .as_deref()
            .is_some_and(|v| !v.is_empty() && !deps::is_valid_version(v))
        {
            let m =
                format!("Test Depends field contains dependency `{dep}' with an invalid version");
            return Err(ctx.invalid(st, testname, Some("Depends"), m));
        }
        if !ctx.source.package_names.contains(&d.package) {
            return Ok(Vec::new());
        }
        alts.extend(synthesize(ctx, st, dep)?);
    }
    Ok(alts)
}

/// autopkgtest's `_synthesize_deps`: the package of a dependency if its
/// `[arch]` admits the testbed (as Dpkg decides); an architecture list
/// Dpkg refuses makes the package erroneous.
fn synthesize(ctx: &Ctx, st: &Stanza, dep: &str) -> Result<Option<String>, InvalidControl> {
    let Some(d) = deps::parse_simple(dep) else {
        return Ok(None);
    };
    match &d.arches {
        Some(list) => match deps::arch_list_admits(list, &ctx.testbed.arch) {
            Ok(admits) => Ok(admits.then_some(d.package)),
            Err(e) => Err(ctx.source_invalid(
                st,
                "Invalid (Test-)Depends architecture qualifiers",
                "Depends",
                e,
            )),
        },
        None => Ok(Some(d.package)),
    }
}

#[cfg(test)]
#[path = "dep8_tests.rs"]
mod tests;
