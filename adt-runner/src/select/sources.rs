//! An archive's Sources index (e.g. bookworm main's, as apt downloads it)
//! read for selection: which sources have tests, their versions, and the
//! binary packages their builds and tests depend on, resolved to the
//! sources that build them.
//!
//! Not for: debian/control or debian/tests/control of an unpacked source
//! (`deb822`, `dep8`); this reads only the fields selection needs, fast
//! enough to re-read the whole index (34,335 stanzas) on every pick.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One source package of the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePkg {
    pub name: String,
    pub version: String,
    /// The `Testsuite` field (`autopkgtest`, `autopkgtest-pkg-perl`, ...).
    pub testsuite: String,
    pub maintainer: String,
    pub uploaders: String,
    /// Binary packages named in Build-Depends(-Indep, -Arch) and
    /// Testsuite-Triggers (the test dependencies).
    pub depends: Vec<String>,
    pub binaries: Vec<String>,
}

impl SourcePkg {
    /// Whether the source has DEP-8 tests: `autopkgtest` in its Testsuite
    /// (dpkg-source puts it there for a debian/tests/control), or, when
    /// `autodep8` is installed (the runner then generates tests with it,
    /// as autopkgtest does), an `autopkgtest-pkg-*` there. Without
    /// autodep8, such a source alone would only say "no tests".
    pub fn has_tests(&self, autodep8: bool) -> bool {
        self.testsuite
            .split(',')
            .map(str::trim)
            .any(|t| t == "autopkgtest" || (autodep8 && t.starts_with("autopkgtest-pkg-")))
    }
}

/// A parsed Sources index.
#[derive(Debug, Default)]
pub struct Index {
    /// Every source (highest version where an index lists several), by name.
    pub sources: BTreeMap<String, SourcePkg>,
    /// Stanzas read (before duplicates were merged).
    pub stanzas: usize,
    /// Whether autodep8's `autopkgtest-pkg-*` counts as tests (the host
    /// has autodep8); false until the caller says so.
    pub autodep8: bool,
    binary_source: HashMap<String, String>,
}

/// What one dependency name is: its first alternative's package name
/// without architecture qualifier, version or restrictions.
fn dep_names(field: &str, out: &mut Vec<String>) {
    for alt in field.split([',', '|']) {
        let name = alt
            .trim()
            .split(|c: char| c.is_whitespace() || "([<".contains(c))
            .next()
            .unwrap_or("");
        let name = name.split(':').next().unwrap_or("");
        if !name.is_empty() && !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
}

impl Index {
    /// Reads the index at `path` (uncompressed).
    pub fn read(path: &Path) -> Result<Index, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the Sources index {}: {e}", path.display()))?;
        Index::parse(&text).map_err(|e| format!("Sources index {}: {e}", path.display()))
    }

    /// Parses the text of a Sources index.
    pub fn parse(text: &str) -> Result<Index, String> {
        let mut idx = Index::default();
        let mut cur = SourcePkg::default();
        let mut field: Option<&str> = None;
        let mut value = String::new();
        let mut start_line = 1;
        for (i, line) in text.lines().chain(std::iter::once("")).enumerate() {
            if line.starts_with([' ', '\t']) {
                if field.is_some() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if let Some(f) = field.take() {
                apply(&mut cur, f, &value);
            }
            if line.trim().is_empty() {
                if cur != SourcePkg::default() {
                    idx.add(std::mem::take(&mut cur), start_line)?;
                }
                start_line = i + 2;
                continue;
            }
            let Some((name, v)) = line.split_once(':') else {
                return Err(format!(
                    "line {}: expected \"Field: value\", got {line:?}",
                    i + 1
                ));
            };
            field = Some(match name {
                "Package"
                | "Version"
                | "Testsuite"
                | "Maintainer"
                | "Uploaders"
                | "Build-Depends"
                | "Build-Depends-Indep"
                | "Build-Depends-Arch"
                | "Testsuite-Triggers"
                | "Binary" => name,
                _ => continue,
            });
            value.clear();
            value.push_str(v.trim());
        }
        for s in idx.sources.values() {
            for b in &s.binaries {
                idx.binary_source.insert(b.clone(), s.name.clone());
            }
        }
        Ok(idx)
    }

    fn add(&mut self, pkg: SourcePkg, line: usize) -> Result<(), String> {
        if pkg.name.is_empty() || pkg.version.is_empty() {
            return Err(format!("stanza at line {line} lacks Package or Version"));
        }
        self.stanzas += 1;
        match self.sources.get(&pkg.name) {
            Some(old) if compare_versions(&old.version, &pkg.version) != Ordering::Less => {}
            _ => {
                self.sources.insert(pkg.name.clone(), pkg);
            }
        }
        Ok(())
    }

    /// Sources with tests, in alphabetical order.
    pub fn testable(&self) -> impl Iterator<Item = &SourcePkg> {
        self.sources.values().filter(|s| s.has_tests(self.autodep8))
    }

    /// The source that builds binary `name`.
    pub fn source_of(&self, binary: &str) -> Option<&SourcePkg> {
        self.binary_source
            .get(binary)
            .and_then(|s| self.sources.get(s))
    }

    /// The versions of the sources `src` depends on (itself excluded),
    /// by source name.
    pub fn dependency_versions(&self, src: &SourcePkg) -> BTreeMap<String, String> {
        src.depends
            .iter()
            .filter_map(|b| self.source_of(b))
            .filter(|d| d.name != src.name)
            .map(|d| (d.name.clone(), d.version.clone()))
            .collect()
    }
}

fn apply(pkg: &mut SourcePkg, field: &str, value: &str) {
    match field {
        "Package" => pkg.name = value.to_string(),
        "Version" => pkg.version = value.to_string(),
        "Testsuite" => pkg.testsuite = value.to_string(),
        "Maintainer" => pkg.maintainer = value.to_string(),
        "Uploaders" => pkg.uploaders = value.to_string(),
        "Binary" => {
            pkg.binaries = value
                .split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect()
        }
        _ => dep_names(value, &mut pkg.depends),
    }
}

/// dpkg's version comparison (epoch, upstream, revision; `~` sorts before
/// everything, letters before other characters).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(ua, ub))
        .then_with(|| compare_part(ra, rb))
}

fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit prefix, character by character.
        loop {
            let ca = a.first().copied().filter(|c| !c.is_ascii_digit());
            let cb = b.first().copied().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            match order(ca).cmp(&order(cb)) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                o => return o,
            }
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (digits(a), digits(b));
        let num = |s: &[u8]| {
            let t = std::str::from_utf8(s)
                .unwrap_or("0")
                .trim_start_matches('0');
            (t.len(), t.to_string())
        };
        match num(&a[..na]).cmp(&num(&b[..nb])) {
            Ordering::Equal => {}
            o => return o,
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: hello
Binary: hello
Version: 2.10-3
Maintainer: Santiago Vila <sanvila@debian.org>
Build-Depends: debhelper-compat (= 13), help2man <!nocheck>
Testsuite: autopkgtest
Testsuite-Triggers: python3-distro
Checksums-Sha256:
 abc 123 hello_2.10-3.dsc

Package: debhelper
Binary: debhelper,
 dh-make-dummy
Version: 13.11.4
Maintainer: Debian Debhelper Team <debhelper@packages.debian.org>

Package: debhelper
Binary: debhelper
Version: 13.2

Package: python-distro
Binary: python3-distro
Version: 1.8.0-1
Testsuite: autopkgtest-pkg-python
Build-Depends: debhelper-compat (= 13), python3-all:any | python3
";

    #[test]
    fn fields_continuations_and_duplicates_are_read() {
        let idx = Index::parse(INDEX).unwrap();
        assert_eq!(idx.stanzas, 4);
        assert_eq!(idx.sources.len(), 3);
        assert_eq!(idx.sources["debhelper"].version, "13.11.4");
        assert_eq!(
            idx.sources["debhelper"].binaries,
            ["debhelper", "dh-make-dummy"]
        );
        let hello = &idx.sources["hello"];
        assert_eq!(
            hello.depends,
            ["debhelper-compat", "help2man", "python3-distro"]
        );
        assert_eq!(hello.maintainer, "Santiago Vila <sanvila@debian.org>");
        let names: Vec<_> = idx.testable().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["hello"],
            "autopkgtest-pkg-python alone is autodep8's, and there is none"
        );
        let with = Index {
            autodep8: true,
            ..Index::parse(INDEX).unwrap()
        };
        let names: Vec<_> = with.testable().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["hello", "python-distro"],
            "autopkgtest-pkg-python counts where autodep8 generates its tests"
        );
        let deps = idx.dependency_versions(hello);
        assert_eq!(
            deps.into_iter().collect::<Vec<_>>(),
            [("python-distro".to_string(), "1.8.0-1".to_string())]
        );
    }

    #[test]
    fn a_stanza_without_a_version_is_an_error_naming_its_line() {
        let e = Index::parse("Package: a\nVersion: 1\n\nPackage: b\n").unwrap_err();
        assert_eq!(e, "stanza at line 4 lacks Package or Version");
        let e = Index::parse("Package: a\nnonsense\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn versions_compare_as_dpkg_does() {
        use Ordering::*;
        for (a, b, o) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.1", "2.0", Greater),
            ("2.10-3", "2.10-10", Less),
            ("1.0a", "1.0-1", Greater),
            ("1.01", "1.1", Equal),
            ("13.11.4", "13.2", Greater),
        ] {
            assert_eq!(compare_versions(a, b), o, "{a} vs {b}");
        }
    }
}
