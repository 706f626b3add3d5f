//! The package under test: a bare source name fetched with `apt-get
//! source` in the testbed, or a .dsc or unbuilt tree copied in; unpacked,
//! its name and version read, optionally built with dpkg-buildpackage, and
//! its debs collected (autopkgtest's `build_source`).
//!
//! Not for: parsing the tests (`dep8`) or running them (`run`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::apt;
use crate::aptconf;
use crate::deb822;
use crate::error::RunError;
use crate::output::Output;
use crate::session::{Kind, Session};
use crate::ssh::quote;

/// What `adt-runner run` was asked to test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `apt-get source NAME` in the testbed.
    Apt(String),
    /// A .dsc and the files it lists.
    Dsc(PathBuf),
    /// An unbuilt source tree.
    Tree(PathBuf),
}

impl Source {
    /// Classifies an argument as autopkgtest does.
    pub fn from_arg(arg: &str) -> Result<Source, String> {
        let p = Path::new(arg);
        if arg.ends_with(".dsc") && p.is_file() {
            Ok(Source::Dsc(p.to_path_buf()))
        } else if is_source_name(arg) {
            Ok(Source::Apt(arg.to_string()))
        } else if p.join("debian/control").is_file() {
            Ok(Source::Tree(p.to_path_buf()))
        } else {
            Err(format!("{arg} is not a valid test package (not a .dsc, a source tree with debian/control, or a source package name)"))
        }
    }

    /// autopkgtest's action kind, shown in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Apt(_) => "apt-source",
            Source::Dsc(_) => "source",
            Source::Tree(_) if self.is_built_tree() => "built-tree",
            Source::Tree(_) => "unbuilt-tree",
        }
    }

    /// A tree with debian/files, which autopkgtest takes as already built:
    /// it tests the tree as it is and never builds it, not even for a
    /// build-needed test.
    pub fn is_built_tree(&self) -> bool {
        matches!(self, Source::Tree(dir) if dir.join("debian/files").exists())
    }

    /// The argument as given.
    pub fn arg(&self) -> String {
        match self {
            Source::Apt(n) => n.clone(),
            Source::Dsc(p) | Source::Tree(p) => p.display().to_string(),
        }
    }
}

fn is_source_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".+-".contains(c))
}

/// The signed-text body of a possibly PGP-signed .dsc.
pub fn strip_pgp(text: &str) -> String {
    if !text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
        return text.to_string();
    }
    let body = text.split_once("\n\n").map_or("", |(_, b)| b);
    body.split("\n-----BEGIN PGP SIGNATURE-----")
        .next()
        .unwrap_or("")
        .to_string()
}

/// The files a .dsc lists (autopkgtest's `files_from_dsc`).
pub fn dsc_files(dsc: &Path) -> Result<Vec<PathBuf>, RunError> {
    let bad = || {
        RunError::BadPkg(format!(
            "{} is invalid and does not contain Files:",
            dsc.display()
        ))
    };
    let text = std::fs::read_to_string(dsc)
        .map_err(|e| RunError::BadPkg(format!("cannot read {}: {e}", dsc.display())))?;
    let stanzas =
        deb822::parse(&dsc.display().to_string(), &strip_pgp(&text)).map_err(|_| bad())?;
    let files = stanzas
        .first()
        .and_then(|s| s.get("Files"))
        .ok_or_else(bad)?;
    let dir = dsc.parent().unwrap_or(Path::new("."));
    Ok(files
        .split_whitespace()
        .filter(|f| f.contains('.') && f.contains('_'))
        .map(|f| dir.join(f))
        .collect())
}

/// autopkgtest's `source_rules_command`: `lines` run with stdout moved to
/// stderr (shown) and fd 3 captured as results; as the normal user.
pub fn rules_command(
    sess: &Session,
    out: &Output,
    lines: &[String],
    which: &str,
    cwd: &str,
    results: Option<usize>,
) -> Result<Vec<String>, RunError> {
    let mut all = vec!["exec 3>&1 >&2".to_string(), format!("cd {cwd}")];
    all.extend_from_slice(lines);
    let script = format!("set -e; {}", sess.as_user(&all.join("; ")));
    let mut captured = Vec::new();
    let mut shown = out.stream(true, None);
    let exit = sess.exec(&script, Kind::Build, &mut captured, &mut shown)?;
    let text = String::from_utf8_lossy(&captured);
    let lines: Vec<String> = text
        .trim_end_matches('\n')
        .lines()
        .map(String::from)
        .collect();
    match exit.code {
        0 => {}
        100 => {
            return Err(RunError::Testbed(format!(
                "rules {which} failed with exit code 100 (apt failure)"
            )))
        }
        rc => {
            return Err(RunError::BadPkg(format!(
                "rules {which} failed with exit code {rc}"
            )))
        }
    }
    if let Some(n) = results {
        if lines.len() != n {
            return Err(RunError::BadPkg(format!(
                "got {} lines of results from {which} where {n} expected: {lines:?}",
                lines.len()
            )));
        }
    }
    Ok(lines)
}

/// Copies what is needed into the testbed; returns the command that
/// unpacks it in an empty build directory.
fn copy_in(sess: &Session, src: &Source) -> Result<String, RunError> {
    match src {
        Source::Apt(name) => Ok(aptconf::apt_source_command(
            name,
            &sess.machine.arch,
            sess.apt_setup(),
        )),
        Source::Dsc(dsc) => {
            let name = dsc
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tb = format!("{}/{name}", sess.scratch);
            sess.copy_down(dsc, &tb)?;
            for part in dsc_files(dsc)? {
                let base = part
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                sess.copy_down(&part, &format!("{}/{base}", sess.scratch))?;
            }
            Ok(format!("dpkg-source -x {} src", quote(&tb)))
        }
        Source::Tree(dir) => {
            let base = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tb = format!("{}/ubtree-{base}", sess.scratch);
            sess.copy_down(dir, &tb)?;
            Ok(format!(
                "cp -rd --preserve=timestamps -- {0} real-tree; [ -x real-tree/debian/rules ] && dpkg-source --before-build real-tree",
                quote(&tb)
            ))
        }
    }
}

/// The unpacked source in the testbed.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// Its directory in the testbed.
    pub dir: String,
    pub name: String,
    pub version: String,
}

/// Copies or fetches `src` into the testbed and unpacks it.
pub fn unpack(sess: &Session, out: &Output, src: &Source) -> Result<Unpacked, RunError> {
    let create = copy_in(sess, src)?;
    ensure_dpkg_dev(sess, out)?;
    let lines = [
        format!("builddir=$(mktemp -d {}/build.XXX)", quote(&sess.scratch)),
        "cd $builddir".to_string(),
        create,
        "chmod -R a+rX .".to_string(),
        "cd [a-z0-9]*/.".to_string(),
        "pwd >&3".to_string(),
        "sed -n \"1 {s/).*//; s/ (/\\n/; p}\" debian/changelog >&3".to_string(),
    ];
    let r = rules_command(sess, out, &lines, "extract", "/", Some(3))?;
    Ok(Unpacked {
        dir: r[0].clone(),
        name: r[1].clone(),
        version: r[2].clone(),
    })
}

/// Installs dpkg-dev in the testbed when it has no dpkg-source, as
/// autopkgtest does before unpacking a source there. It stays for the
/// tests that follow without a revert, and shows in their
/// `<test>-packages`.
pub fn ensure_dpkg_dev(sess: &Session, out: &Output) -> Result<(), RunError> {
    if sess.capture("command -v dpkg-source", Kind::Short)?.0.code != 0 {
        apt::satisfy(sess, out, "dpkg-dev", &[], apt::Lasting::Kept)?;
    }
    Ok(())
}

/// Unpacks an unbuilt tree on the host (copy, `dpkg-source
/// --before-build`) and copies the result into the testbed. The caller
/// installs dpkg-dev there first when the tests could see it
/// (`ensure_dpkg_dev`). `None` when the host has no dpkg-source to do it.
pub fn unpack_on_host(
    sess: &Session,
    dir: &Path,
    work: &Path,
) -> Result<Option<Unpacked>, RunError> {
    let local = |e: std::io::Error| {
        RunError::Error(format!("unpacking {} on the host: {e}", dir.display()))
    };
    let tree = work.join("host-src/real-tree");
    std::fs::create_dir_all(work.join("host-src")).map_err(local)?;
    let cp = Command::new("cp")
        .arg("-rd")
        .arg("--preserve=timestamps")
        .arg("--")
        .arg(dir)
        .arg(&tree)
        .status()
        .map_err(local)?;
    if !cp.success() {
        return Err(RunError::Error(format!(
            "cannot copy {}: cp {cp}",
            dir.display()
        )));
    }
    let rules = tree.join("debian/rules");
    if rules
        .metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    {
        let Ok(st) = Command::new("dpkg-source")
            .arg("--before-build")
            .arg(&tree)
            .stdout(Stdio::null())
            .status()
        else {
            return Ok(None);
        };
        if !st.success() {
            return Err(RunError::BadPkg(format!(
                "rules extract failed with exit code {}",
                st.code().unwrap_or(1)
            )));
        }
    }
    let changelog = std::fs::read_to_string(tree.join("debian/changelog")).map_err(local)?;
    let (name, version) = changelog_head(&changelog).ok_or_else(|| {
        RunError::BadPkg(format!(
            "got no name and version from {}/debian/changelog",
            dir.display()
        ))
    })?;
    // The build directory is the normal user's, as the testbed's unpack
    // makes it: a build writes its debs next to the tree.
    let build =
        sess.check(&sess.as_user(&format!("mktemp -d {}/build.XXX", quote(&sess.scratch))))?;
    let dest = format!("{}/real-tree", build.trim());
    sess.copy_down(&tree, &dest)?;
    sess.check(&format!("chmod -R a+rX {}", quote(build.trim())))?;
    Ok(Some(Unpacked {
        dir: dest,
        name,
        version,
    }))
}

/// Name and version from the first line of debian/changelog.
pub fn changelog_head(text: &str) -> Option<(String, String)> {
    let first = text.lines().next()?;
    let (name, rest) = first.split_once(" (")?;
    let version = rest.split(')').next()?;
    Some((name.to_string(), version.to_string()))
}

/// Installs the build dependencies named in `source_stanza` (and
/// build-essential, and fakeroot unless `gain_root`: `--gain-root`, which
/// dpkg-buildpackage then uses instead), as autopkgtest does before a
/// build.
pub fn install_build_deps(
    sess: &Session,
    out: &Output,
    source_stanza: Option<&deb822::Stanza>,
    gain_root: Option<&str>,
) -> Result<(), RunError> {
    let field = |f: &str| {
        source_stanza
            .and_then(|s| s.get(f))
            .unwrap_or("")
            .to_string()
    };
    let mut essential = vec!["build-essential"];
    if gain_root.is_none() && (!sess.user.is_empty() || !sess.caps.contains("root-on-testbed")) {
        essential.push("fakeroot");
    }
    let deps = format!(
        "{}, {}, {}, {}",
        field("Build-Depends"),
        field("Build-Depends-Indep"),
        field("Build-Depends-Arch"),
        essential.join(", ")
    );
    // The caller reverts a testbed that can revert before any test runs.
    let lasting = if sess.can_revert() {
        apt::Lasting::Throwaway
    } else {
        apt::Lasting::Kept
    };
    apt::satisfy(sess, out, &deps, &[], lasting)
}

/// Builds with dpkg-buildpackage (the build dependencies installed by
/// `install_build_deps`), keeping patches applied, with the `--env`
/// variables `env` (`K=V`) set, as autopkgtest sets them for the build.
/// `gain_root`: `--gain-root`, dpkg-buildpackage's `-r`.
pub fn build(
    sess: &Session,
    out: &Output,
    unpacked: &Unpacked,
    env: &[String],
    build_parallel: Option<&str>,
    gain_root: Option<&str>,
) -> Result<(), RunError> {
    // autopkgtest's `opts.build_parallel or testbed.nproc`
    let nproc = build_parallel
        .map(String::from)
        .or_else(|| sess.machine.nproc.clone())
        .unwrap_or_else(|| "1".into());
    let exports: String = env
        .iter()
        .map(|e| format!("export {}; ", quote(e)))
        .collect();
    // appended as autopkgtest appends it: unquoted, for the shell
    let gain_root = gain_root.map(|g| format!(" -r{g}")).unwrap_or_default();
    let lines = [
        format!("{exports}DEB_BUILD_OPTIONS=\"parallel={nproc} $DEB_BUILD_OPTIONS\" dpkg-buildpackage -us -uc -b{gain_root}"),
        "dpkg-source --before-build .".to_string(),
    ];
    rules_command(sess, out, &lines, "build", &unpacked.dir, Some(0))?;
    Ok(())
}

/// The debs the build left next to the tree, copied to `dest` as
/// `<package>.deb`; returns the package names.
pub fn collect_debs(
    sess: &Session,
    unpacked: &Unpacked,
    dest: &Path,
) -> Result<Vec<String>, RunError> {
    let parent = Path::new(&unpacked.dir)
        .parent()
        .map_or("/".into(), |p| p.display().to_string());
    let listed = sess.check(&format!("cd {}; echo *.deb", quote(&parent)))?;
    let mut names = Vec::new();
    for deb in listed.split_whitespace().filter(|d| *d != "*.deb") {
        let Some(pkg) = deb
            .split('_')
            .next()
            .filter(|p| deb.ends_with(".deb") && !p.is_empty())
        else {
            return Err(RunError::BadPkg(format!("badly-named binary `{deb}'")));
        };
        sess.copy_up(
            &format!("{parent}/{deb}"),
            &dest.join(format!("{pkg}.deb")),
            false,
        )?;
        names.push(pkg.to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_classified_like_autopkgtest() {
        assert_eq!(
            Source::from_arg("mawk").unwrap(),
            Source::Apt("mawk".into())
        );
        assert_eq!(
            Source::from_arg("libc6.1-dev+x").unwrap().kind(),
            "apt-source"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("pkg/debian")).unwrap();
        std::fs::write(d.path().join("pkg/debian/control"), "Source: x\n").unwrap();
        let tree = d.path().join("pkg");
        assert_eq!(
            Source::from_arg(tree.to_str().unwrap()).unwrap(),
            Source::Tree(tree.clone())
        );
        let e = Source::from_arg("/nonexistent/Dir").unwrap_err();
        assert!(
            e.contains("/nonexistent/Dir is not a valid test package"),
            "{e}"
        );
    }

    #[test]
    fn dsc_files_come_from_the_files_field_of_a_signed_dsc() {
        let d = tempfile::tempdir().unwrap();
        let dsc = d.path().join("x_1.dsc");
        let text = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nFormat: 3.0 (native)\nSource: x\nFiles:\n abc 12 x_1.tar.xz\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n";
        std::fs::write(&dsc, text).unwrap();
        assert_eq!(dsc_files(&dsc).unwrap(), vec![d.path().join("x_1.tar.xz")]);
    }

    #[test]
    fn changelog_heads_give_name_and_version() {
        let c = "mawk (1.3.4.20200120-3.1) unstable; urgency=medium\n\n  * x\n";
        assert_eq!(
            changelog_head(c),
            Some(("mawk".into(), "1.3.4.20200120-3.1".into()))
        );
        assert_eq!(changelog_head("garbage\n"), None);
    }

    #[test]
    fn a_dsc_without_files_is_an_erroneous_package() {
        let d = tempfile::tempdir().unwrap();
        let dsc = d.path().join("x_1.dsc");
        std::fs::write(&dsc, "Source: x\n").unwrap();
        assert!(
            matches!(dsc_files(&dsc), Err(RunError::BadPkg(m)) if m.contains("does not contain Files:"))
        );
    }
}
