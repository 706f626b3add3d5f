//! The testbed's apt sources and pinning as autopkgtest's `--add-apt-source`,
//! `--add-apt-release`, `--apt-pocket`, `--pin-packages`,
//! `--apt-default-release` and `--no-apt-fallback` set them up, after every
//! opening of the testbed, between the copies and the setup commands
//! (autopkgtest 5.28's `run_setup_commands`); and the command that fetches a
//! source package by name in the version the pinning selects.
//!
//! The shell scripts are autopkgtest's, word for word where the testbed
//! sees them, so that the files in /etc/apt and apt's choices are the same.
//!
//! Not for: installing packages (`apt`).

use crate::error::RunError;
use crate::session::Session;
use crate::ssh::quote;

/// The apt options of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptSetup {
    /// `--add-apt-source`: sources.list lines.
    pub sources: Vec<String>,
    /// `--add-apt-release`: release names, on the first source's mirror.
    pub releases: Vec<String>,
    /// `--apt-pocket`: `POCKET` or `POCKET=pkg,src:name,...`.
    pub pockets: Vec<String>,
    /// `--pin-packages`: `RELEASE=pkg,src:name,...`.
    pub pins: Vec<String>,
    /// `--apt-default-release`.
    pub default_release: Option<String>,
    /// Not `--no-apt-fallback`: an installation that fails under the
    /// pinning is retried without it, one release at a time.
    pub fallback: bool,
}

impl AptSetup {
    /// Whether any option asks for a change to the testbed's apt.
    pub fn any(&self) -> bool {
        !self.sources.is_empty()
            || !self.releases.is_empty()
            || !self.pockets.is_empty()
            || !self.pins.is_empty()
            || self.default_release.is_some()
    }

    /// Checks the option values as the command line is read, so that a
    /// mistake is an error naming the option instead of a failure later in
    /// the testbed (autopkgtest dies with a Python traceback on a
    /// `--pin-packages` value without `=`).
    pub fn check(&self) -> Result<(), String> {
        for p in &self.pins {
            match p.split_once('=') {
                Some((r, l)) if !r.trim().is_empty() && !l.trim().is_empty() => {}
                _ => {
                    return Err(format!(
                        "--pin-packages {p}: expected RELEASE=PACKAGE[,src:SOURCE...]"
                    ))
                }
            }
        }
        for p in &self.pockets {
            if p.split('=').next().unwrap_or("").trim().is_empty() {
                return Err(format!(
                    "--apt-pocket {p}: expected POCKET[=PACKAGE,src:SOURCE...]"
                ));
            }
        }
        let names = self
            .pins
            .iter()
            .filter_map(|p| p.split_once('=').map(|(r, _)| r))
            .chain(self.releases.iter().map(String::as_str))
            .chain(
                self.pockets
                    .iter()
                    .map(|p| p.split('=').next().unwrap_or("")),
            )
            .chain(self.default_release.as_deref());
        for n in names {
            if n.chars()
                .any(|c| c.is_whitespace() || "\"'\\$`;&|<>(){}".contains(c))
            {
                return Err(format!(
                    "apt release or pocket name {n:?}: not a release name"
                ));
            }
        }
        let lists = (self.pins.iter().map(|p| ("--pin-packages", p)))
            .chain(self.pockets.iter().map(|p| ("--apt-pocket", p)))
            .filter_map(|(o, p)| p.split_once('=').map(|(_, l)| (o, p, l)));
        for (opt, value, list) in lists {
            for item in list.split(',').map(str::trim) {
                let name = item.strip_prefix("src:").unwrap_or(item);
                if !is_package_name(name) {
                    return Err(format!(
                        "{opt} {value}: {item:?} is not a package name (or src: and a source name)"
                    ));
                }
            }
        }
        for s in &self.sources {
            if s.contains('\n') {
                return Err(format!("--add-apt-source {s:?}: more than one line"));
            }
        }
        Ok(())
    }
}

/// A Debian package name: lower case letters, digits, `+`, `-` and `.`,
/// starting with a letter or digit.
fn is_package_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Sets the testbed's apt up as autopkgtest does, in its order. Returns the
/// releases pinned (the fallback's stack, the last pinned first out).
pub fn apply(sess: &Session, apt: &AptSetup) -> Result<Vec<String>, RunError> {
    let mut pinned = Vec::new();
    if apt.default_release.is_some() {
        set_default_release(sess, apt)?;
    }
    for s in &apt.sources {
        add_source(sess, s, "autopkgtest-add-apt-sources.list")?;
    }
    for p in &apt.pockets {
        let pocket = p.split('=').next().unwrap_or(p);
        let script = format!(
            r#"
            sed -rn 's/^(deb|deb-src) +(\[.*\] *)?((http|https|file):[^ ]*) +([^ -]+) +(.*)$/\1 \2\3 \5-{pocket} \6/p' \
                /etc/apt/sources.list `ls /etc/apt/sources.list.d/*.list 2>/dev/null|| true` > \
                /etc/apt/sources.list.d/{pocket}.list
            for retry in 1 2 3; do
                apt-get --no-list-cleanup \
                        -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/{pocket}.list \
                        -o Dir::Etc::sourceparts=/dev/null \
                        update 2>&1 && break || \
                        if [ $retry = 3 ] ; then
                            return 1
                        else
                            sleep 15
                        fi
            done
            "#
        );
        sess.check(&format!("sh -ec {}", quote(&script)))?;
    }
    for p in &apt.pockets {
        let (pocket, list) = p.split_once('=').unwrap_or((p, ""));
        let default = default_release(sess, apt)?;
        let release = format!("{default}-{pocket}");
        let script = format!(
            "mkdir -p /etc/apt/preferences.d; printf \"Package: *\\nPin: release a={release}\\nPin-Priority: 500\\n\" > /etc/apt/preferences.d/autopkgtest-{release}-baseline; "
        );
        sess.check(&format!("sh -ec {}", quote(&script)))?;
        if !list.is_empty() {
            pin_packages(sess, apt, &release, list, &[format!("{default}-updates")])?;
            pinned.push(release);
        }
    }
    if !apt.releases.is_empty() {
        let get = r#"
            sed -rn 's/^(deb|deb-src) +(\[.*\] *)?((http|https|file):[^ ]*) +([^ ]+) +(.*)$/\2\3 \6/p' \
                /etc/apt/sources.list `ls /etc/apt/sources.list.d/*.list 2>/dev/null|| true` | head -1
            "#;
        let found = sess.check(&format!("sh -ec {}", quote(get)))?;
        let words: Vec<&str> = found.split_whitespace().collect();
        let Some((mirror, components)) = words.split_first() else {
            return Err(RunError::Error(
                "--add-apt-release: the testbed has no http, https or file apt source to take the mirror from".into(),
            ));
        };
        let components = components.join(" ");
        for r in &apt.releases {
            let lines = ["deb", "deb-src"]
                .map(|t| format!("{t} {mirror} {r} {components}"))
                .join("\n");
            add_source(
                sess,
                &lines,
                &format!("autopkgtest-add-apt-release-{r}.list"),
            )?;
        }
    }
    for p in &apt.pins {
        let (release, list) = p.split_once('=').unwrap_or((p, ""));
        pin_packages(sess, apt, release, list, &[])?;
        pinned.push(release.to_string());
    }
    Ok(pinned)
}

/// autopkgtest's `_get_default_release`: the option, else the release of
/// the first http, https or file source (found once, kept across reverts).
pub fn default_release(sess: &Session, apt: &AptSetup) -> Result<String, RunError> {
    if let Some(r) = &apt.default_release {
        return Ok(r.clone());
    }
    if let Some(r) = sess.default_release.borrow().as_ref() {
        return Ok(r.clone());
    }
    let script = r#"SRCS=$(ls /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null|| true); sed -rn '/^(deb|deb-src) +(\[.*\] *)?(http|https|file):/ { s/\[.*\] +//; s/^[^ ]+ +[^ ]* +([^ ]+) +.*$/\1/p }' $SRCS | head -n1"#;
    let r = sess
        .check(&format!("sh -ec {}", quote(script)))?
        .trim()
        .to_string();
    *sess.default_release.borrow_mut() = Some(r.clone());
    Ok(r)
}

fn set_default_release(sess: &Session, apt: &AptSetup) -> Result<(), RunError> {
    let default = default_release(sess, apt)?;
    // with pockets, the archive name: the pocket has the same code name
    let how = if apt.pockets.is_empty() { "" } else { "a=" };
    let script = format!(
        "mkdir -p /etc/apt/preferences.d; printf \"Package: *\\nPin: release {how}{default}\\nPin-Priority: 990\\n\" > /etc/apt/preferences.d/autopkgtest-default-release"
    );
    sess.check(&format!("sh -ec {}", quote(&script)))?;
    Ok(())
}

fn pin_packages(
    sess: &Session,
    apt: &AptSetup,
    release: &str,
    list: &str,
    defaults: &[String],
) -> Result<(), RunError> {
    let (mut bin, mut src) = (Vec::new(), Vec::new());
    for p in list.split(',').map(str::trim) {
        match p.strip_prefix("src:") {
            Some(s) => src.push(s),
            None => bin.push(p),
        }
    }
    let mut script = format!(
        "mkdir -p /etc/apt/preferences.d; PKGS=\"{}\"; ",
        bin.join(" ")
    );
    if !src.is_empty() {
        script.push_str(&format!(
            "PKGS=\"$PKGS $(apt-cache showsrc {} | awk '/^Package-List:/ {{ show=1; next }} (/^ / && show==1) {{ print $1; next }} {{ show=0 }}' |sort -u | tr '\\n' ' ')\"; ",
            src.join(" ")
        ));
    }
    let file = release_file_name(release);
    script.push_str(&format!(
        "printf \"Package: $PKGS\\nPin: release a={release}\\nPin-Priority: 995\\n\" > /etc/apt/preferences.d/autopkgtest-{file}; "
    ));
    for d in defaults {
        script.push_str(&format!(
            "printf \"\nPackage: *\\nPin: release a={d}\\nPin-Priority: 990\\n\" >> /etc/apt/preferences.d/autopkgtest-{file}; "
        ));
    }
    sess.check(&format!("sh -ec {}", quote(&script)))?;
    set_default_release(sess, apt)
}

/// autopkgtest's file name for a release's pin file: `/` becomes `-` and
/// `.` becomes `_`.
fn release_file_name(release: &str) -> String {
    release.replace('/', "-").replace('.', "_")
}

fn add_source(sess: &Session, source: &str, file: &str) -> Result<(), RunError> {
    tracing::debug!("adding APT source: {source}");
    let script = r#"
        echo "$1" >> /etc/apt/sources.list.d/$2
        for retry in 1 2 3; do
            apt-get --no-list-cleanup \
                    -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/$2 \
                    -o Dir::Etc::sourceparts=/dev/null \
                    update 2>&1 && break || \
                    if [ $retry = 3 ] ; then
                        return 1
                    else
                        sleep 15
                    fi
        done
        "#;
    sess.check(&format!(
        "sh -ec {} sh {} {}",
        quote(script),
        quote(source),
        quote(file)
    ))?;
    Ok(())
}

/// The fallback after a failed installation under pinning: drops the last
/// release's pin file (and the default release's with the last one), as
/// autopkgtest does. Returns the release, or None when nothing is pinned
/// any more or the fallback is off.
pub fn fall_back(sess: &Session, apt: &AptSetup) -> Result<Option<String>, RunError> {
    if !apt.fallback {
        return Ok(None);
    }
    let Some(release) = sess.pinned.borrow_mut().pop() else {
        return Ok(None);
    };
    // autopkgtest removes the release's name, not its file name: a release
    // with `/` or `.` makes this fail there too
    sess.check(&format!(
        "/bin/sh -ec {}",
        quote(&format!("rm /etc/apt/preferences.d/autopkgtest-{release}"))
    ))?;
    if sess.pinned.borrow().is_empty() {
        sess.check(&format!(
            "/bin/sh -ec {}",
            quote("rm -f /etc/apt/preferences.d/autopkgtest-default-release")
        ))?;
    }
    Ok(Some(release))
}

/// autopkgtest's command that fetches source package `src` with
/// `apt-get source` and unpacks it as `src`: the version the pinning
/// selects (of the binaries built in every version, the newest candidate),
/// or the pinned release's with `--pin-packages RELEASE=...,src:SRC`.
pub fn apt_source_command(src: &str, arch: &str, apt: &AptSetup) -> String {
    let pinned = apt.pins.iter().find_map(|p| {
        let (release, list) = p.split_once('=')?;
        list.split(',')
            .any(|x| x == format!("src:{src}"))
            .then_some(release)
    });
    let mut cmd = match pinned {
        Some(release) => {
            format!("OUT=$(apt-get source -d -q --only-source {src}/{release} 2>&1) || RC=$?;")
        }
        None => {
            let all = apt.fallback
                || apt.pockets.iter().any(|p| {
                    p.split_once('=')
                        .is_some_and(|(_, l)| l.split(',').any(|x| x == format!("src:{src}")))
                });
            let part2 = if all { CHECK_ALL_PKGS } else { CHECK_FIRST_PKG };
            format!(
                "{}{}{}",
                SOURCE_PART1.replace("%(arch)s", arch),
                part2,
                SOURCE_PART3
            )
            .replace("%(src)s", src)
        }
    };
    cmd.push_str(&SOURCE_TAIL.replace("%(src)s", src));
    cmd
}

// autopkgtest 5.28's create_command for an apt source, as the shell sees it
// (Python's escapes resolved; %(src)s and %(arch)s filled in above).
const SOURCE_PART1: &str = r#"
pkgs=$(apt-cache showsrc --only-source %(src)s || [ $? != 100 ] || apt-cache showsrc %(src)s);
pkgs=$(echo "$pkgs
" | awk "
  /^Package: / {
    if (\$2 != \"%(src)s\") { skippar=1; next; }
    else { skippar=0}}
  { if (skippar) next; }
  /^Binary:/ {
    sub(/^Binary:/, \"\");
    gsub(/,/, \"\");
    split(\$0,oldpkgs)};
  /^Package-List:/ {
    inlist=1;
    have_pl=1;
    delete thissrc;
    if (\$2) thissrc[\$2] = 1;
    next }
  (/^ / && inlist == 1) {
    foundarch=0;
    archmatch=0;
    for (k=1; k<=NF; k++) {
      if (\$k ~ /^arch=/) foundarch=1;
      if (\$k ~ /^arch=(.*[,-])?(all|any|%(arch)s)([,-].*)?\$/) archmatch=1; }
    if (foundarch == 0 || archmatch == 1) thissrc[\$1] = 1;
    next }
  { if (!inlist) next;
    inlist=0;"#;

const CHECK_ALL_PKGS: &str = r#"
    remaining=0;
    if (intersect) {
      for (p in pkgs) {
        if (!(p in thissrc)) delete pkgs[p];
        else remaining=1};
      if (!remaining) {
        for (p in thissrc) {pkgs[p] = 1}} }
    else {
      for (p in thissrc) {
        pkgs[p] = 1};
      intersect=1 }"#;

const CHECK_FIRST_PKG: &str = r#"
    for (p in thissrc) {
      pkgs[p] = 1};
    nextfile;"#;

const SOURCE_PART3: &str = r#"
  }
  END {
    if (have_pl) { for (p in pkgs) print p }
    else {for (p in oldpkgs) print oldpkgs[p]} }");
[ -n "$pkgs" ] || exit 1;
for pkg in $pkgs; do
  pkg_candidate=$(apt-cache policy "^$(echo $pkg | sed -r "s/([.+])/\\\\\1/g")\$"|sed -n "/Candidate:/ { s/^.* //; /none/d; p}") || continue;
  [ -n "$pkg_candidate" ] || continue;
  show=$(apt-cache show $pkg=$pkg_candidate | grep "^Source:" || true);
  [ "$pkg" = "%(src)s" ] || echo "$show" | grep -q "^Source: %(src)s\b" || continue;
  srcversion=$(echo "$show" | sed -n "/^Source: .*(.*)/ { s/^.*(//; s/)\$//; p}");
  ver=${srcversion:-$pkg_candidate};
  dpkg --compare-versions "$ver" lt "$maxver" || maxver="$ver";
done;
[ -z "$maxver" ] || maxver="=$maxver";
OUT=$(apt-get source -d -q --only-source %(src)s$maxver 2>&1) || RC=$?;
"#;

const SOURCE_TAIL: &str = r#"
if [ -n "$RC" ]; then
  if echo "$OUT" | grep -q "Unable to find a source package"; then
    exit 1;
  else
    exit $RC;
  fi;
fi;
echo "$OUT" | grep ^Get: || true;
dpkg-source -x %(src)s_*.dsc src >/dev/null"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> AptSetup {
        AptSetup {
            fallback: true,
            ..AptSetup::default()
        }
    }

    #[test]
    fn bad_option_values_are_named() {
        let mut a = setup();
        a.pins = vec!["unstable".into()];
        assert!(a.check().unwrap_err().contains("--pin-packages unstable"));
        a.pins = vec!["unstable=".into()];
        assert!(a.check().is_err());
        a.pins = vec!["unstable=foo,src:bar".into()];
        assert!(a.check().is_ok());
        a.pockets = vec!["=foo".into()];
        assert!(a.check().unwrap_err().contains("--apt-pocket =foo"));
        a.pockets = vec!["proposed; rm -rf /".into()];
        assert!(a.check().unwrap_err().contains("not a release name"));
        a.pockets = vec!["backports=foo,src:$(reboot)".into()];
        assert!(a
            .check()
            .unwrap_err()
            .contains("\"src:$(reboot)\" is not a package name"));
        a.pins = vec!["unstable=foo bar".into()];
        a.pockets = vec![];
        assert!(a
            .check()
            .unwrap_err()
            .contains("\"foo bar\" is not a package name"));
        a.pins = vec!["unstable=libg++2.8,src:gcc-12".into()];
        assert!(a.check().is_ok());
        a.pockets = vec!["backports=foo".into()];
        a.sources = vec!["deb x y\ndeb z".into()];
        assert!(a.check().unwrap_err().contains("more than one line"));
    }

    #[test]
    fn release_file_names_are_autopkgtests() {
        assert_eq!(release_file_name("stable/updates"), "stable-updates");
        assert_eq!(release_file_name("12.1"), "12_1");
    }
}
