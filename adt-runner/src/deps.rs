//! Dependency fields (Depends, Build-Depends, Recommends, Architecture):
//! syntax check of one test dependency the way autopkgtest checks it, and
//! reduction of a field to the testbed's architecture with no build profile
//! active (what autopkgtest asks of `Dpkg::Deps::deps_parse`).
//!
//! Not for: installing anything (that is `apt`), or the `@` expansions of
//! DEP-8 (that is `dep8`).

/// A test dependency `pkg[:archqual] [(op version)] [[arches]]`, as matched
/// by autopkgtest's `dep_re`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleDep {
    pub package: String,
    pub version: Option<String>,
    pub arches: Option<String>,
}

fn is_pkg_char(c: char) -> bool {
    // autopkgtest's class [a-z0-9+-.] is a range '+'..'.' plus letters
    c.is_ascii_lowercase() || c.is_ascii_digit() || ('+'..='.').contains(&c)
}

fn take_while(s: &str, f: impl Fn(char) -> bool) -> (&str, &str) {
    let end = s.find(|c: char| !f(c)).unwrap_or(s.len());
    s.split_at(end)
}

fn parse_version_part(rest: &str) -> Option<(Option<String>, &str)> {
    let Some(inner) = rest.strip_prefix('(') else {
        return Some((None, rest));
    };
    let op_len = ["<<", "<=", ">=", ">>", "="]
        .iter()
        .find(|op| inner.starts_with(*op))?
        .len();
    let inner = inner[op_len..].trim_start();
    let close = inner.find(')')?;
    Some((Some(inner[..close].to_string()), &inner[close + 1..]))
}

fn parse_arch_part(rest: &str) -> Option<Option<String>> {
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Some(None);
    }
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    let ok = !inner.is_empty()
        && inner
            .chars()
            .all(|c| is_pkg_char(c) || c == '!' || c == ' ');
    ok.then(|| Some(inner.to_string()))
}

/// Matches one alternative of a test dependency like autopkgtest's
/// `dep_re`; `None` if it is not one.
pub fn parse_simple(dep: &str) -> Option<SimpleDep> {
    let dep = dep.trim();
    let (package, rest) = take_while(dep, is_pkg_char);
    if package.is_empty() {
        return None;
    }
    let rest = match rest.strip_prefix(':') {
        Some(r) => {
            let (q, r) = take_while(r, |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
            });
            if q.is_empty() {
                return None;
            }
            r
        }
        None => rest,
    };
    let (version, rest) = parse_version_part(rest.trim_start())?;
    let arches = parse_arch_part(rest)?;
    Some(SimpleDep {
        package: package.to_string(),
        version,
        arches,
    })
}

/// Whether `v` is a valid Debian version, by python-debian's rule (which
/// autopkgtest applies to versions in test Depends): no blanks, and a colon
/// only after a numeric epoch.
pub fn is_valid_version(v: &str) -> bool {
    let (has_epoch, rest) = match v.split_once(':') {
        Some((e, r)) if !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()) => (true, r),
        _ => (false, v),
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+:~-".contains(c))
        && (has_epoch || !rest.contains(':'))
}

/// dpkg's cputable: the CPU names a `<cpu>` line of the tuple table
/// stands for.
const CPUS: &[&str] = &[
    "alpha",
    "amd64",
    "arc",
    "armeb",
    "arm",
    "arm64",
    "avr32",
    "hppa",
    "loong64",
    "i386",
    "ia64",
    "m32r",
    "m68k",
    "mips",
    "mipsel",
    "mipsr6",
    "mipsr6el",
    "mips64",
    "mips64el",
    "mips64r6",
    "mips64r6el",
    "nios2",
    "or1k",
    "powerpc",
    "powerpcel",
    "ppc64",
    "ppc64el",
    "riscv64",
    "s390",
    "s390x",
    "sh3",
    "sh3eb",
    "sh4",
    "sh4eb",
    "sparc",
    "sparc64",
    "tilegx",
];

/// dpkg's tupletable, in its order: (abi-libc-os tuple, architecture
/// name); a name ending in `-` (or empty) is a prefix for any CPU of
/// `CPUS`, which completes the tuple.
const TUPLES: &[(&str, &str)] = &[
    ("eabi-uclibc-linux-arm", "uclibc-linux-armel"),
    ("base-uclibc-linux-", "uclibc-linux-"),
    ("eabihf-musl-linux-arm", "musl-linux-armhf"),
    ("base-musl-linux-", "musl-linux-"),
    ("ilp32-gnu-linux-arm64", "arm64ilp32"),
    ("eabihf-gnu-linux-arm", "armhf"),
    ("eabi-gnu-linux-arm", "armel"),
    ("abin32-gnu-linux-mips64r6el", "mipsn32r6el"),
    ("abin32-gnu-linux-mips64r6", "mipsn32r6"),
    ("abin32-gnu-linux-mips64el", "mipsn32el"),
    ("abin32-gnu-linux-mips64", "mipsn32"),
    ("abi64-gnu-linux-mips64r6el", "mips64r6el"),
    ("abi64-gnu-linux-mips64r6", "mips64r6"),
    ("abi64-gnu-linux-mips64el", "mips64el"),
    ("abi64-gnu-linux-mips64", "mips64"),
    ("spe-gnu-linux-powerpc", "powerpcspe"),
    ("x32-gnu-linux-amd64", "x32"),
    ("base-gnu-linux-", ""),
    ("eabihf-gnu-kfreebsd-arm", "kfreebsd-armhf"),
    ("base-gnu-kfreebsd-", "kfreebsd-"),
    ("base-gnu-knetbsd-", "knetbsd-"),
    ("base-gnu-kopensolaris-", "kopensolaris-"),
    ("base-gnu-hurd-", "hurd-"),
    ("base-bsd-dragonflybsd-", "dragonflybsd-"),
    ("base-bsd-freebsd-", "freebsd-"),
    ("base-bsd-openbsd-", "openbsd-"),
    ("base-bsd-netbsd-", "netbsd-"),
    ("base-bsd-darwin-", "darwin-"),
    ("base-sysv-aix-", "aix-"),
    ("base-sysv-solaris-", "solaris-"),
    ("eabi-uclibc-uclinux-arm", "uclinux-armel"),
    ("base-uclibc-uclinux-", "uclinux-"),
    ("base-tos-mint-m68k", "mint-m68k"),
];

/// Dpkg's `debarch_to_debtuple`: the (abi, libc, os, cpu) of an
/// architecture name, if dpkg knows it.
fn debtuple(arch: &str) -> Option<[String; 4]> {
    // `linux-amd64` is amd64 (dpkg keeps this old spelling working)
    let arch = match arch.strip_prefix("linux-") {
        Some(rest) => rest.split('-').next().unwrap_or(""),
        None => arch,
    };
    let split = |t: String| -> Option<[String; 4]> {
        let v: Vec<String> = t.splitn(4, '-').map(String::from).collect();
        v.try_into().ok()
    };
    // Exact names first: dpkg loads them over the `<cpu>` lines.
    if let Some((t, _)) = TUPLES.iter().find(|(t, a)| !t.ends_with('-') && *a == arch) {
        return split(t.to_string());
    }
    TUPLES
        .iter()
        .filter(|(t, _)| t.ends_with('-'))
        .find_map(|(t, prefix)| {
            let cpu = arch.strip_prefix(prefix)?;
            CPUS.contains(&cpu).then(|| format!("{t}{cpu}"))
        })
        .and_then(split)
}

/// Dpkg's `debwildcard_to_debtuple`.
fn debwildcard(wildcard: &str) -> Option<[String; 4]> {
    let parts: Vec<&str> = wildcard.splitn(4, '-').collect();
    if !parts.contains(&"any") {
        return debtuple(wildcard);
    }
    let mut t: Vec<String> = vec!["any".to_string(); 4 - parts.len().min(4)];
    t.extend(parts.iter().map(|p| p.to_string()));
    t.try_into().ok()
}

/// Dpkg's `debarch_is(host, wildcard)`.
pub fn arch_matches(host: &str, wildcard: &str) -> bool {
    if wildcard == host || wildcard == "any" {
        return true;
    }
    let (Some(real), Some(alias)) = (debtuple(host), debwildcard(wildcard)) else {
        return false;
    };
    real.iter().zip(&alias).all(|(r, a)| a == r || a == "any")
}

/// Dpkg's `debarch_list_parse`: the names of an architecture list, or the
/// error dpkg stops with on one that is not a legal name.
fn arch_list(list: &str) -> Result<Vec<&str>, String> {
    let items: Vec<&str> = list.split_whitespace().collect();
    for a in &items {
        let name = a.strip_prefix('!').unwrap_or(a);
        let legal = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !legal {
            return Err(format!(
                "'{a}' is not a legal architecture in list '{list}'"
            ));
        }
    }
    Ok(items)
}

/// Dpkg's `debarch_is_concerned`: the list is read in order, the first
/// positive entry matching `host` admits it, the first negated one
/// matching excludes it, and a negated one not matching admits it unless
/// a later one excludes it.
fn arch_is_concerned(host: &str, items: &[&str]) -> bool {
    let mut seen = false;
    for item in items {
        let item = item.to_lowercase();
        match item.strip_prefix('!') {
            Some(not) if arch_matches(host, not) => return false,
            Some(_) => seen = true,
            None if arch_matches(host, &item) => return true,
            None => {}
        }
    }
    seen
}

/// Whether an architecture restriction list (`amd64 i386`, `!armel
/// !armhf`) admits `host`, as Dpkg decides it; an error names an illegal
/// entry.
pub fn arch_list_admits(list: &str, host: &str) -> Result<bool, String> {
    Ok(arch_is_concerned(host, &arch_list(list)?))
}

/// Dpkg's `evaluate_restriction_formula` with no build profile active:
/// some `<...>` group whose every term is negated. `formula` is what
/// follows the architecture list, `<a b> <c>`; groups are separated by
/// `>`, blanks, `<` as `parse_build_profiles` splits them.
fn profiles_admit(formula: &str) -> bool {
    let inner = formula.trim();
    let inner = inner.strip_prefix('<').unwrap_or(inner).trim_start();
    let inner = inner.strip_suffix('>').unwrap_or(inner);
    let mut groups = Vec::new();
    let (mut start, mut from) = (0, 0);
    // split /\s*>\s+<\s*/ (blanks next to a term go with split_whitespace)
    while let Some(off) = inner[from..].find('>') {
        let gt = from + off;
        let after = &inner[gt + 1..];
        let next = skip_ws(after);
        if next.len() < after.len() && next.starts_with('<') {
            groups.push(&inner[start..gt]);
            start = inner.len() - next.len() + 1;
            from = start;
        } else {
            from = gt + 1;
        }
    }
    groups.push(&inner[start..]);
    // a term is negated when it is `!` and a name (`!` alone is a name)
    groups.iter().any(|g| {
        g.split_whitespace()
            .all(|t| t.len() > 1 && t.starts_with('!'))
    })
}

/// One alternative of a dependency field as `Dpkg::Deps::Simple` parses
/// it: `pkg[:qual] [(rel version)] [[arches]] [<profiles>...]`.
struct Simple<'a> {
    package: &'a str,
    archqual: Option<&'a str>,
    relation: Option<&'static str>,
    version: Option<&'a str>,
    arches: Option<&'a str>,
    profiles: Option<&'a str>,
}

fn is_perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches(is_perl_space)
}

/// `[a-zA-Z0-9][extra...]*` at the start of `s`: the match and the rest.
fn name_at<'a>(s: &'a str, extra: &str) -> Option<(&'a str, &'a str)> {
    if !s.chars().next()?.is_ascii_alphanumeric() {
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || extra.contains(c)))
        .unwrap_or(s.len());
    Some(s.split_at(end))
}

/// Dpkg::Deps::Simple's `parse_string`; `None` where dpkg warns "can't
/// parse dependency".
fn parse_dpkg_simple(dep: &str, build_dep: bool) -> Option<Simple<'_>> {
    let (package, mut rest) = name_at(skip_ws(dep), "+.-")?;
    let mut archqual = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (q, r) = name_at(r, "-")?;
        if q == "native" && !build_dep {
            return None;
        }
        archqual = Some(q);
        rest = r;
    }
    let (mut relation, mut version) = (None, None);
    if let Some(r) = skip_ws(rest).strip_prefix('(') {
        let r = skip_ws(r);
        // (<<|<=|=|>=|>>|[<>]) \s* ([^\)\s]+) \s* \), tried in this
        // order as the regex backtracks: `(>=)` is `>` of version `=`;
        // < and > mean <= and >=
        let (rel, ver, after) = [
            ("<<", "<<"),
            ("<=", "<="),
            ("=", "="),
            (">=", ">="),
            (">>", ">>"),
            ("<", "<="),
            (">", ">="),
        ]
        .iter()
        .filter_map(|(op, norm)| {
            let v = skip_ws(r.strip_prefix(op)?);
            let end = v
                .find(|c: char| c == ')' || is_perl_space(c))
                .unwrap_or(v.len());
            let after = skip_ws(&v[end..]).strip_prefix(')')?;
            (end > 0).then_some((*norm, &v[..end], after))
        })
        .next()?;
        relation = Some(rel);
        version = Some(ver);
        rest = after;
    }
    let mut arches = None;
    if let Some(r) = skip_ws(rest).strip_prefix('[') {
        let close = r.find(']')?;
        if close == 0 {
            return None;
        }
        arches = Some(&r[..close]);
        rest = &r[close + 1..];
    }
    let mut profiles = None;
    let mut r = skip_ws(rest);
    let start = r;
    while let Some(after) = r.strip_prefix('<') {
        let close = after.find('>')?;
        if close == 0 {
            return None;
        }
        r = skip_ws(&after[close + 1..]);
        profiles = Some(&start[..start.len() - r.len()]);
    }
    if !r.is_empty() {
        return None;
    }
    Some(Simple {
        package,
        archqual,
        relation,
        version,
        arches,
        profiles,
    })
}

/// `Dpkg::Deps::deps_parse(field, reduce_arch => 1, reduce_profiles => 1,
/// host_arch => host, build_dep => build_dep)->output()`: the field
/// reduced to `host` with no build profile active, one string per
/// or-group, in Dpkg's spelling (`foo (>= 1)`; `<` and `>` become `<=`
/// and `>=`). Alternatives that `[arch]` or `<profile>` excludes are
/// dropped, and or-groups left empty vanish. An error, as Dpkg's, names
/// what does not parse; autopkgtest then gives up on the whole field.
pub fn reduce(field: &str, host: &str, build_dep: bool) -> Result<Vec<String>, String> {
    let line: String = field
        .lines()
        .map(|l| l.trim_matches(is_perl_space))
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.trim_matches(is_perl_space);
    let mut groups = Vec::new();
    for group in line.split(',').map(|g| g.trim_matches(is_perl_space)) {
        let mut alts: Vec<&str> = group
            .split('|')
            .map(|a| a.trim_matches(is_perl_space))
            .collect();
        // Perl's split drops trailing empty fields
        while alts.last() == Some(&"") {
            alts.pop();
        }
        let mut kept = Vec::new();
        for alt in alts {
            let d = parse_dpkg_simple(alt, build_dep)
                .ok_or_else(|| format!("can't parse dependency {alt}"))?;
            if let Some(list) = d.arches {
                if !arch_list_admits(list, host)? {
                    continue;
                }
            }
            if d.profiles.is_some_and(|p| !profiles_admit(p)) {
                continue;
            }
            let mut out = d.package.to_string();
            if let Some(q) = d.archqual {
                out = format!("{out}:{q}");
            }
            if let (Some(rel), Some(v)) = (d.relation, d.version) {
                out = format!("{out} ({rel} {v})");
            }
            kept.push(out);
        }
        if !kept.is_empty() {
            groups.push(kept.join(" | "));
        }
    }
    Ok(groups)
}

/// Drops substitution variables (`${misc:Depends}`, `(= ${binary:Version})`)
/// from a field read from a source package's debian/control, as autopkgtest
/// does for `@recommends@`: a dependency that is a variable goes, and so
/// does what `re.sub(r'\(.*\${\S*}.*\)', '', dep)` matches, from the
/// first `(` before a variable to the last `)` after it on that line.
pub fn filter_variables(field: &str) -> String {
    field
        .split(',')
        .map(str::trim)
        .filter(|d| !d.starts_with("${"))
        .map(strip_variable_parens)
        .collect::<Vec<String>>()
        .join(", ")
}

fn strip_variable_parens(dep: &str) -> String {
    for (open, _) in dep.match_indices('(') {
        let line_end = dep[open..].find('\n').map_or(dep.len(), |e| open + e);
        let line = &dep[open + 1..line_end];
        // the first `${` whose blank-free run holds a `}`
        let var_end = line.match_indices("${").find_map(|(k, _)| {
            let run = &line[k + 2..];
            let run = &run[..run.find(char::is_whitespace).unwrap_or(run.len())];
            run.find('}').map(|m| k + 2 + m)
        });
        let Some(var_end) = var_end else { continue };
        if let Some(close) = line[var_end..].rfind(')') {
            let close = open + 1 + var_end + close;
            return format!("{}{}", &dep[..open], &dep[close + 1..]);
        }
    }
    dep.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_dependencies_parse_like_dep_re() {
        let d = parse_simple(" foo:any (>= 1.2-3) [amd64 !i386]").unwrap();
        assert_eq!(d.package, "foo");
        assert_eq!(d.version.as_deref(), Some("1.2-3"));
        assert_eq!(d.arches.as_deref(), Some("amd64 !i386"));
        assert_eq!(parse_simple("lib+x.y-z").unwrap().package, "lib+x.y-z");
    }

    #[test]
    fn malformed_dependencies_are_rejected() {
        for bad in [
            "",
            "Foo",
            "foo (~ 1)",
            "foo (>= 1",
            "foo <!nocheck>",
            "foo [amd64",
            "foo bar",
            "foo:",
        ] {
            assert!(parse_simple(bad).is_none(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn versions_are_checked() {
        for good in ["1", "1.0-1", "2:1.0~rc1-0+b1", "1-2-3", "1.0-", "1:2:3"] {
            assert!(is_valid_version(good), "{good}");
        }
        for bad in ["", "1 2", "1.0 ", "1_0", "(1)", "abc:1"] {
            assert!(!is_valid_version(bad), "{bad:?}");
        }
    }

    #[test]
    fn architecture_wildcards_match_like_dpkg() {
        assert!(arch_matches("amd64", "amd64"));
        assert!(arch_matches("amd64", "any"));
        assert!(arch_matches("amd64", "linux-any"));
        assert!(arch_matches("amd64", "any-amd64"));
        assert!(arch_matches("amd64", "gnu-linux-any"));
        assert!(arch_matches("amd64", "base-gnu-linux-any"));
        assert!(arch_matches("amd64", "linux-amd64"));
        assert!(arch_matches("armhf", "any-arm"));
        assert!(arch_matches("armhf", "linux-armhf"));
        assert!(arch_matches("armhf", "eabihf-any-any-arm"));
        assert!(arch_matches("mips64el", "any-mips64el"));
        assert!(arch_matches("hurd-amd64", "hurd-any"));
        assert!(!arch_matches("amd64", "i386"));
        assert!(!arch_matches("amd64", "kfreebsd-any"));
        assert!(!arch_matches("amd64", "any-i386"));
        // the ABI and libc parts count (dpkg's tuple table)
        assert!(!arch_matches("amd64", "musl-linux-any"));
        assert!(!arch_matches("amd64", "eabihf-gnu-linux-any"));
        assert!(!arch_matches("x32", "linux-amd64"));
        assert!(arch_matches("x32", "any-amd64"));
        assert!(!arch_matches("amd64", "nonsense"));
    }

    #[test]
    fn arch_lists_are_read_like_dpkg() {
        let admits = |l: &str, h: &str| arch_list_admits(l, h).unwrap();
        assert!(admits("amd64 i386", "amd64"));
        assert!(!admits("armel armhf", "amd64"));
        assert!(admits("!armel !armhf", "amd64"));
        assert!(!admits("!amd64", "amd64"));
        // mixed lists: the first entry that decides, in order
        assert!(admits("amd64 !i386", "amd64"));
        assert!(admits("!i386 amd64", "amd64"));
        assert!(!admits("!amd64 amd64", "amd64"));
        assert!(admits("AMD64", "amd64"));
        let e = arch_list_admits("amd64 i+386", "amd64").unwrap_err();
        assert!(e.contains("'i+386' is not a legal architecture"), "{e}");
    }

    #[test]
    fn reduction_drops_foreign_arches_and_active_profiles() {
        let field = "debhelper-compat (= 13), libfoo-dev [amd64], libbar-dev [!amd64], \
                     python3 <!nocheck>, gdb <cross>, a [i386] | b(>=2)";
        assert_eq!(
            reduce(field, "amd64", true).unwrap(),
            vec![
                "debhelper-compat (= 13)",
                "libfoo-dev",
                "python3",
                "b (>= 2)"
            ]
        );
    }

    #[test]
    fn upper_bounds_are_versions_not_profiles() {
        // `<<` and `<=` once read as the start of a build profile
        let field = "foo (<< 2), bar (<= 3), baz (>= 1), qux (<< 2) <!nocheck>, \
                     python3-foo (<< 3.0~) | python3-bar, old (< 2), new (> 1), \
                     gone (<< 1) <cross>";
        assert_eq!(
            reduce(field, "amd64", true).unwrap(),
            vec![
                "foo (<< 2)",
                "bar (<= 3)",
                "baz (>= 1)",
                "qux (<< 2)",
                "python3-foo (<< 3.0~) | python3-bar",
                "old (<= 2)",
                "new (>= 1)",
            ]
        );
    }

    #[test]
    fn profile_formulas_are_evaluated_with_no_profile_active() {
        let r = |f: &str| reduce(f, "amd64", true).unwrap();
        assert_eq!(r("a <!nocheck !nodoc>"), vec!["a"]);
        assert_eq!(r("a <!nocheck nodoc>"), Vec::<String>::new());
        assert_eq!(r("a <nodoc> <!nocheck>"), vec!["a"]);
        assert_eq!(r("a <nodoc> <cross>"), Vec::<String>::new());
        assert_eq!(r("a [amd64] <!nocheck>"), vec!["a"]);
        assert_eq!(r("a [i386] <!nocheck>"), Vec::<String>::new());
    }

    #[test]
    fn what_dpkg_cannot_parse_is_an_error() {
        for (bad, what) in [
            ("foo (>= 1", "foo (>= 1"),
            ("Foo_Bar", "Foo_Bar"),
            ("a, b'c", "b'c"),
            ("a | | b", "can't parse dependency "),
            ("foo:", "foo:"),
            ("foo (~ 1)", "foo (~ 1)"),
            ("foo [amd64", "foo [amd64"),
            ("foo <nocheck", "foo <nocheck"),
        ] {
            let e = reduce(bad, "amd64", true).unwrap_err();
            assert!(e.contains(what), "{bad:?}: {e}");
        }
        // :native only in build dependencies
        assert_eq!(reduce("r:native", "amd64", true).unwrap(), vec!["r:native"]);
        assert!(reduce("r:native", "amd64", false).is_err());
    }

    #[test]
    fn lenient_spellings_parse_as_dpkg_reads_them() {
        let r = |f: &str| reduce(f, "amd64", true).unwrap();
        // uppercase names, blanks everywhere, empty groups, a trailing |
        assert_eq!(r(" Foo ( >= 1 ) , ,bar |"), vec!["Foo (>= 1)", "bar"]);
        assert_eq!(r("a,\n b\n"), vec!["a", "b"]);
        // `(>=)` is `>` of version `=`, as Dpkg's regex backtracks
        assert_eq!(r("foo (>=)"), vec!["foo (>= =)"]);
        assert_eq!(r("foo:any (= 1) [amd64]"), vec!["foo:any (= 1)"]);
        assert_eq!(r(""), Vec::<String>::new());
    }

    #[test]
    fn substitution_variables_are_filtered() {
        assert_eq!(
            filter_variables("${misc:Recommends}, foo (= ${binary:Version}), bar (>= 1)"),
            "foo , bar (>= 1)"
        );
        // autopkgtest's greedy regex takes everything to the last `)`
        assert_eq!(
            filter_variables("r1 (= ${binary:Version}) | r2 (>= 1)"),
            "r1 "
        );
        assert_eq!(filter_variables("r1 (>= 1) ${x}"), "r1 (>= 1) ${x}");
        assert_eq!(filter_variables("r1 (>= 1) | r2 (= ${a})"), "r1 ");
        assert_eq!(filter_variables("r1 (= ${a b})"), "r1 (= ${a b})");
    }
}
