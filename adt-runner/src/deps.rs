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

/// The (os, cpu) of a Debian architecture name, enough for the wildcards
/// `any`, `OS-any`, `any-CPU` and `OS-CPU`.
fn arch_tuple(arch: &str) -> (&str, &str) {
    let (os, cpu) = match arch.split_once('-') {
        Some((os, cpu)) => (os, cpu),
        None => ("linux", arch),
    };
    let cpu = match cpu {
        "armel" | "armhf" => "arm",
        "x32" => "amd64",
        c => c,
    };
    (os, cpu)
}

/// Dpkg's `debarch_is(host, wildcard)`.
pub fn arch_matches(host: &str, wildcard: &str) -> bool {
    if wildcard == host || wildcard == "any" {
        return true;
    }
    let (hos, hcpu) = arch_tuple(host);
    let parts: Vec<&str> = wildcard.split('-').collect();
    let (wos, wcpu) = match parts.as_slice() {
        [os, cpu] => (*os, *cpu),
        [_abi, os, cpu] | [_, _abi, os, cpu] => (*os, *cpu),
        _ => return false,
    };
    (wos == "any" || wos == hos) && (wcpu == "any" || wcpu == hcpu)
}

/// Whether an architecture restriction list (`amd64 i386` or `!armel
/// !armhf`) admits `host`.
pub fn arch_list_admits(list: &str, host: &str) -> bool {
    let items: Vec<&str> = list.split_whitespace().collect();
    if items.iter().any(|a| a.starts_with('!')) {
        !items
            .iter()
            .any(|a| arch_matches(host, a.trim_start_matches('!')))
    } else {
        items.iter().any(|a| arch_matches(host, a))
    }
}

/// Whether a build-profile formula (`<!nocheck> <cross>`) holds with no
/// profile active: some `<...>` group whose every term is negated.
fn profiles_admit(formula: &str) -> bool {
    let groups: Vec<&str> = formula
        .split('<')
        .filter_map(|g| g.split('>').next())
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .collect();
    groups.is_empty()
        || groups
            .iter()
            .any(|g| g.split_whitespace().all(|t| t.starts_with('!')))
}

/// One alternative reduced to the host: `None` if its `[arch]` or
/// `<profile>` excludes it, else the text without those qualifiers.
fn reduce_alternative(alt: &str, host: &str) -> Option<String> {
    let mut text = alt.trim().to_string();
    if let Some(start) = text.find('<') {
        let formula = text[start..].to_string();
        if !profiles_admit(&formula) {
            return None;
        }
        text.truncate(start);
    }
    if let (Some(start), Some(end)) = (text.find('['), text.rfind(']')) {
        if end > start {
            if !arch_list_admits(&text[start + 1..end], host) {
                return None;
            }
            text.replace_range(start..=end, "");
        }
    }
    Some(normalise(&text))
}

/// `foo(>=1)` becomes `foo (>= 1)`, as Dpkg's `output()` writes it.
fn normalise(alt: &str) -> String {
    let alt = alt.trim();
    match alt.split_once('(') {
        Some((pkg, rest)) => {
            let rest = rest.trim_end().trim_end_matches(')').trim();
            let op_end = rest.find(|c| !"<>=".contains(c)).unwrap_or(rest.len());
            let (op, ver) = rest.split_at(op_end);
            format!("{} ({} {})", pkg.trim(), op, ver.trim())
        }
        None => alt.to_string(),
    }
}

/// Reduces a comma-separated dependency field to `host` with no build
/// profile active; or-groups lose excluded alternatives and vanish when
/// none is left. Returns one string per or-group.
pub fn reduce(field: &str, host: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|g| !g.trim().is_empty())
        .filter_map(|group| {
            let alts: Vec<String> = group
                .split('|')
                .filter_map(|a| reduce_alternative(a, host))
                .filter(|a| !a.is_empty())
                .collect();
            (!alts.is_empty()).then(|| alts.join(" | "))
        })
        .collect()
}

/// Drops substitution variables (`${misc:Depends}`, `(= ${binary:Version})`)
/// from a field read from a source package's debian/control, as autopkgtest
/// does for `@recommends@`.
pub fn filter_variables(field: &str) -> String {
    field
        .split(',')
        .map(str::trim)
        .filter(|d| !d.starts_with("${"))
        .map(|d| match (d.find('('), d.find("${")) {
            (Some(open), Some(var)) if var > open => match d[open..].find(')') {
                Some(close) => format!("{}{}", &d[..open], &d[open + close + 1..]),
                None => d.to_string(),
            },
            _ => d.to_string(),
        })
        .collect::<Vec<String>>()
        .join(", ")
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
        assert!(arch_matches("armhf", "any-arm"));
        assert!(!arch_matches("amd64", "i386"));
        assert!(!arch_matches("amd64", "kfreebsd-any"));
        assert!(!arch_matches("amd64", "any-i386"));
    }

    #[test]
    fn arch_lists_can_be_positive_or_negative() {
        assert!(arch_list_admits("amd64 i386", "amd64"));
        assert!(!arch_list_admits("armel armhf", "amd64"));
        assert!(arch_list_admits("!armel !armhf", "amd64"));
        assert!(!arch_list_admits("!amd64", "amd64"));
    }

    #[test]
    fn reduction_drops_foreign_arches_and_active_profiles() {
        let field = "debhelper-compat (= 13), libfoo-dev [amd64], libbar-dev [!amd64], \
                     python3 <!nocheck>, gdb <cross>, a [i386] | b(>=2)";
        assert_eq!(
            reduce(field, "amd64"),
            vec![
                "debhelper-compat (= 13)",
                "libfoo-dev",
                "python3",
                "b (>= 2)"
            ]
        );
    }

    #[test]
    fn substitution_variables_are_filtered() {
        assert_eq!(
            filter_variables("${misc:Recommends}, foo (= ${binary:Version}), bar (>= 1)"),
            "foo , bar (>= 1)"
        );
    }
}
