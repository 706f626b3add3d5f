//! One package through the testbed, in autopkgtest's order: open, unpack,
//! parse, build if needed, then per test reset, install, run; errors turned
//! into the summary lines and exit codes autopkgtest gives them.
//!
//! Where it knowingly differs from autopkgtest 5.28 (verdicts and exit
//! codes stay the same):
//! - a tree is unpacked on the host (when its debian/control parses and
//!   the host has dpkg-dev) and copied in; the testbed still gets dpkg-dev
//!   first, as autopkgtest's unpacking gives it, unless the tree is built
//!   for its binaries (the build installs dpkg-dev, and the revert after
//!   it leaves none of it to the tests either way) or is a built tree;
//! - a testbed failure during a test (ssh lost, exit 255 or 254) keeps
//!   what the test wrote in `<test>-stdout`/`-stderr`; autopkgtest, which
//!   copies them up after the test, has neither file (both keep it in the
//!   log);
//! - debian/tests/control lines that are not deb822 and fields given twice
//!   are errors (python-debian ignores the first and keeps the last);
//! - not supported: .changes and git sources, `--shell`, `--shell-fail`,
//!   reboot.
//!
//! Not for: any single step (see `source`, `apt`, `run`, `dep8`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::apt;
use crate::autodep8;
use crate::binaries::Binaries;
use crate::deb822::Stanza;
use crate::dep8::{self, InvalidControl, Parsed, SourceControl, Test};
use crate::error::RunError;
use crate::output::{Destinations, Output, TestInfo};
use crate::run::{self, Tree};
use crate::session::{Session, Setup, Timeouts};
use crate::source::{self, Source, Unpacked};
use crate::ssh::quote;
use crate::testbed::Testbed;
use crate::verdict::{ExitStatus, NeedsInternet, Verdict, ERROR};

/// Everything `adt-runner run` was asked.
pub struct Request {
    pub source: Source,
    /// `--output-dir`, `--log-file`, `--summary-file`, `--quiet`.
    pub output: Destinations,
    pub env: Vec<String>,
    pub only_tests: Vec<String>,
    pub skip_tests: Vec<String>,
    pub timeouts: Timeouts,
    pub built_binaries: bool,
    /// Whether autodep8 may generate tests (not `--no-auto-control`).
    pub auto_control: bool,
    /// Given .debs, published like built ones (`--binary`).
    pub extra_binaries: Vec<PathBuf>,
    pub build_parallel: Option<String>,
    /// `--setup-commands`, `--setup-commands-boot`, `--copy`.
    pub setup: Setup,
    /// `--ignore-restrictions`.
    pub ignore_restrictions: Vec<String>,
    /// `--needs-internet`.
    pub needs_internet: NeedsInternet,
    /// `--gain-root`: dpkg-buildpackage's `-r` command.
    pub gain_root: Option<String>,
    /// `--validate`: stop once the tests are read.
    pub validate: bool,
    pub command_line: String,
    /// The testbed as testinfo.json names it (`ssh:USER@HOST:PORT`,
    /// `xen:IMAGE`), for a run whose testbed never opened.
    pub testbed: String,
}

/// Opens the testbed (a closure, so that its failure is reported like any
/// other testbed failure).
pub type Opener<'a> = Box<dyn FnOnce() -> Result<Box<dyn Testbed>, RunError> + 'a>;

struct Run<'a> {
    req: &'a Request,
    out: &'a Output,
    status: ExitStatus,
    blamed: Vec<String>,
    work: tempfile::TempDir,
    binaries: Binaries,
}

/// Runs the request; returns the exit code.
pub fn run(req: &Request, open: Opener) -> i32 {
    let started = Instant::now();
    let out = match Output::open(&req.output) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("adt-runner: ERROR: {e}");
            return ERROR;
        }
    };
    out.info(&format!("starting date and time: {}", now_string()));
    out.info(&format!("version {}", env!("CARGO_PKG_VERSION")));
    out.info(&format!(
        "host {}; command line: {}",
        hostname(),
        req.command_line
    ));
    let mut session = None;
    let code = match start(req, &out, open, &mut session) {
        Ok(code) => code,
        Err((e, blamed)) => report_error(&out, &e, &blamed),
    };
    let interrupted = crate::signal::take();
    // Like autopkgtest, whatever happened: a testbed that did not open
    // (unreachable, a failed setup command) gives what is known before.
    let info = match &session {
        Some(sess) => testinfo(sess, req),
        None => TestInfo {
            virt_server: req.testbed.clone(),
            custom_environment: req.env.clone(),
            ..TestInfo::default()
        },
    };
    out.testinfo(&info);
    if let Some(mut sess) = session {
        if let Err(e) = sess.stop() {
            out.error(&format!("error cleaning up: {e}"));
        }
    }
    out.write("exitcode", &format!("{code}\n"));
    out.write("duration", &format!("{}\n", started.elapsed().as_secs()));
    if let Some(sig) = interrupted {
        crate::signal::die_of(sig);
    }
    code
}

fn start(
    req: &Request,
    out: &Output,
    open: Opener,
    session: &mut Option<Session>,
) -> Result<i32, (RunError, Vec<String>)> {
    let tb = open().map_err(|e| (e, Vec::new()))?;
    let internet = req.needs_internet != NeedsInternet::Skip;
    let sess = Session::open(tb, out, req.timeouts, req.setup.clone(), internet)
        .map_err(|e| (e, Vec::new()))?;
    let sess = session.insert(sess);
    let work = tempfile::Builder::new()
        .prefix("adt-runner.work.")
        .tempdir()
        .map_err(|e| {
            (
                RunError::Error(format!("cannot create a work directory: {e}")),
                Vec::new(),
            )
        })?;
    let binaries = Binaries::new(out.path("binaries"));
    let mut r = Run {
        req,
        out,
        status: ExitStatus::default(),
        blamed: Vec::new(),
        work,
        binaries,
    };
    let result = r.process(sess);
    if let Err(e) = r.binaries.reset(sess, out) {
        out.error(&format!("error cleaning up: {e}"));
    }
    match result {
        Ok(()) => Ok(r.status.code),
        Err(e) => Err((e, r.blamed)),
    }
}

/// Whether a tree is unpacked on the host: when its debian/control parses
/// there. One that does not is unpacked in the testbed, whose unpack
/// reports it as autopkgtest does.
fn unpacks_on_host(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("debian/control"))
        .is_ok_and(|c| SourceControl::parse("debian/control", &c).is_ok())
}

fn report_error(out: &Output, e: &RunError, blamed: &[String]) -> i32 {
    match e {
        RunError::BadPkg(m) => {
            out.preport(&format!("blame: {}", blamed.join(" ")));
            out.preport(&format!("badpkg: {m}"));
            out.error(&format!("erroneous package: {m}"));
            out.psummary(&format!("erroneous package: {m}"));
        }
        RunError::Testbed(m) => {
            out.error(&format!("testbed failure: {m}"));
            out.psummary(&format!("testbed failure: {m}"));
        }
        RunError::Error(m) => {
            out.psummary(m);
            out.error(m);
        }
    }
    e.exit_code()
}

impl Run<'_> {
    fn process(&mut self, sess: &mut Session) -> Result<(), RunError> {
        let src = &self.req.source;
        self.out.info(&format!(
            "@@@@@@@@@@@@@@@@@@@@ {} {}",
            src.kind(),
            src.arg()
        ));
        self.blamed.push(src.arg());
        self.take_given_binaries()?;
        sess.reset(&[], self.out)?;
        let built_tree = src.is_built_tree();
        let built_binaries =
            self.req.built_binaries && !matches!(src, Source::Apt(_)) && !built_tree;
        // Like autopkgtest, a tree or .dsc is built for its binaries unless
        // -B: even when no test installs them, a build that fails makes the
        // package erroneous. A tree is unpacked on the host (when it has
        // dpkg-source). autopkgtest unpacks it in the testbed, installing
        // dpkg-dev there first, and with -B that dpkg-dev (perl, make,
        // patch...) is there for the tests: a test that uses it without
        // declaring it passes. So it is installed here too; built for its
        // binaries, the tree's build installs dpkg-dev with
        // build-essential, and the testbed is reverted before the tests. A
        // built tree is not unpacked, by autopkgtest either.
        let unpacked = match src {
            Source::Tree(dir) if unpacks_on_host(dir) => {
                if !built_binaries && !built_tree {
                    source::ensure_dpkg_dev(sess, self.out)?;
                }
                match source::unpack_on_host(sess, dir, self.work.path())? {
                    Some(u) => u,
                    None => source::unpack(sess, self.out, src)?,
                }
            }
            _ => source::unpack(sess, self.out, src)?,
        };
        self.out.info(&format!(
            "testing package {} version {}",
            unpacked.name, unpacked.version
        ));
        self.out.write(
            "testpkg-version",
            &format!("{} {}\n", unpacked.name, unpacked.version),
        );
        let build_needed = if built_binaries {
            self.out.info("build needed for binaries");
            true
        } else if built_tree {
            false
        } else {
            self.build_needed_for_tests(sess, &unpacked)?
        };
        if build_needed {
            sess.needs_reset();
            let stanza = self.build_stanza(sess, &unpacked)?;
            source::install_build_deps(
                sess,
                self.out,
                stanza.as_ref(),
                self.req.gain_root.as_deref(),
            )?;
            if built_binaries {
                // While the testbed's apt is still as a revert leaves it
                // (the publishing after the revert installs this deb); the
                // download runs during the build.
                self.binaries.start_apt_utils_fetch(sess)?;
            }
            let built = source::build(
                sess,
                self.out,
                &unpacked,
                &self.req.env,
                self.req.build_parallel.as_deref(),
                self.req.gain_root.as_deref(),
            );
            // Waited for even when the build failed, so that nothing is
            // left running; the build's error comes first.
            let fetched = self
                .binaries
                .finish_apt_utils_fetch(sess, &self.work.path().join("tools"));
            built?;
            fetched?;
        }
        let host_tree = self.work.path().join("tests-tree");
        sess.copy_up(&unpacked.dir, &host_tree, true)?;
        if build_needed && built_binaries {
            std::fs::create_dir_all(&self.binaries.dir)
                .map_err(|e| RunError::Error(e.to_string()))?;
            let built = source::collect_debs(sess, &unpacked, &self.binaries.dir)?;
            self.binaries.registered.extend(built);
        }
        let parsed = self.parse(&host_tree, sess, &self.req.only_tests)?;
        if self.req.validate {
            self.out.report("*", "Test specification is valid");
            self.out.show_summary();
            return Ok(());
        }
        if !parsed.skipped.is_empty() {
            self.status.record_parse_skips();
        }
        let tests = self.select(parsed.tests, src);
        let tree = Tree {
            host: host_tree,
            tb: unpacked.dir.clone(),
        };
        self.run_tests(sess, &tests, &tree)?;
        self.out.show_summary();
        Ok(())
    }

    /// The `--binary` debs, kept as `<package>.deb` beside built ones.
    fn take_given_binaries(&mut self) -> Result<(), RunError> {
        for deb in &self.req.extra_binaries {
            let name = deb.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(pkg) = name
                .as_deref()
                .filter(|n| n.ends_with(".deb"))
                .and_then(|n| n.split('_').next())
                .filter(|p| !p.is_empty())
            else {
                return Err(RunError::Error(format!(
                    "--binary {}: expected a file named PACKAGE_VERSION_ARCH.deb",
                    deb.display()
                )));
            };
            std::fs::create_dir_all(&self.binaries.dir)
                .and_then(|()| std::fs::copy(deb, self.binaries.dir.join(format!("{pkg}.deb"))))
                .map_err(|e| RunError::Error(format!("--binary {}: {e}", deb.display())))?;
            self.blamed.push(format!("binary {}", deb.display()));
            self.binaries.registered.push(pkg.to_string());
        }
        Ok(())
    }

    fn build_needed_for_tests(
        &mut self,
        sess: &Session,
        unpacked: &Unpacked,
    ) -> Result<bool, RunError> {
        let pkg = self.work.path().join("pkg");
        sess.copy_up(
            &format!("{}/debian", unpacked.dir),
            &pkg.join("debian"),
            true,
        )?;
        let parsed = self.parse(&pkg, sess, &[])?;
        let _ = std::fs::remove_dir_all(&pkg);
        let needed = parsed.tests.iter().any(|t| t.has("build-needed"));
        self.out.info(if needed {
            "build needed for tests"
        } else {
            "build not needed"
        });
        Ok(needed)
    }

    /// The source stanza whose Build-Depends the build installs.
    fn build_stanza(
        &self,
        sess: &Session,
        unpacked: &Unpacked,
    ) -> Result<Option<Stanza>, RunError> {
        let text = match &self.req.source {
            Source::Dsc(dsc) => source::strip_pgp(
                &std::fs::read_to_string(dsc)
                    .map_err(|e| RunError::BadPkg(format!("cannot read {}: {e}", dsc.display())))?,
            ),
            _ => sess.check(&format!("cat {}/debian/control", quote(&unpacked.dir)))?,
        };
        let stanzas = crate::deb822::parse("debian/control", &text)
            .map_err(|e| RunError::BadPkg(e.to_string()))?;
        Ok(stanzas.into_iter().next())
    }

    /// Parses the tests of the tree at `root`, reporting parse-time skips.
    fn parse(&self, root: &Path, sess: &Session, only: &[String]) -> Result<Parsed, RunError> {
        let read = |rel: &str| std::fs::read_to_string(root.join(rel));
        let badpkg = |e: InvalidControl| {
            self.out.error(&e.detail());
            RunError::BadPkg(e.to_string())
        };
        let control = read("debian/control")
            .map_err(|e| RunError::BadPkg(format!("cannot read debian/control: {e}")))?;
        let sc = SourceControl::parse("debian/control", &control).map_err(badpkg)?;
        // No file: no tests, unless autodep8 makes some. A file that cannot
        // be read (not UTF-8, a directory) is an error that names it, not
        // "no tests".
        let own = match read("debian/tests/control") {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(RunError::BadPkg(format!(
                    "cannot read debian/tests/control: {e}"
                )))
            }
        };
        let testsuite = sc.source.as_ref().and_then(|s| s.get("Testsuite"));
        let generated = if self.req.auto_control && autodep8::wanted(own.is_some(), testsuite) {
            match autodep8::generate("autodep8", root).map_err(RunError::Error)? {
                Ok(text) => {
                    tracing::debug!("autodep8 generated control: -----\n{text}\n-------");
                    Some(text)
                }
                Err(why) => {
                    tracing::debug!("{why}");
                    None
                }
            }
        } else {
            None
        };
        let (file, text) = match (generated, own) {
            (Some(text), _) => (autodep8::ORIGIN, text),
            (None, Some(text)) => ("debian/tests/control", text),
            (None, None) => return Ok(Parsed::default()),
        };
        let tb = dep8::Testbed {
            arch: sess.machine.arch.clone(),
            caps: sess.caps.clone(),
            ignore: self.req.ignore_restrictions.iter().cloned().collect(),
        };
        let parsed = dep8::parse(file, &text, &sc, &tb, only).map_err(badpkg)?;
        for s in &parsed.skipped {
            self.out.report(&s.name, &format!("SKIP {}", s.reason));
        }
        Ok(parsed)
    }

    fn select(&self, mut tests: Vec<Test>, src: &Source) -> Vec<Test> {
        let only = &self.req.only_tests;
        if !only.is_empty() {
            tests.retain(|t| only.contains(&t.name));
            if tests.is_empty() {
                self.out.error(&format!(
                    "{} {} has no test matching --test-name {}",
                    src.kind(),
                    src.arg(),
                    only.join(", ")
                ));
            }
        }
        tests.retain(|t| !self.req.skip_tests.contains(&t.name));
        tests
    }

    fn run_tests(
        &mut self,
        sess: &mut Session,
        tests: &[Test],
        tree: &Tree,
    ) -> Result<(), RunError> {
        if tests.is_empty() {
            if self.status.code == 0 {
                self.out.report("*", "SKIP no tests in this package");
            }
            self.status.code = crate::verdict::NO_TESTS;
            return Ok(());
        }
        for t in tests {
            self.out
                .info(&format!("test {}: preparing testbed", t.name));
            sess.reset(&t.depends, self.out)?;
            self.binaries.publish(sess, self.out)?;
            match self.prepare(sess, t)? {
                Prepared::Ready => {
                    let opts = run::Options {
                        env: &self.req.env,
                        build_parallel: self.req.build_parallel.clone(),
                        needs_internet: self.req.needs_internet,
                    };
                    let v = run::run_test(sess, self.out, tree, t, &opts)?;
                    self.status.record(&v);
                }
                Prepared::Skipped(v) => self.status.record(&v),
                Prepared::BadPkg => self.status.record_badpkg(),
            }
            if t.has("breaks-testbed") {
                sess.needs_reset();
            }
        }
        self.status.finish();
        sess.needs_reset();
        Ok(())
    }

    /// Dependencies and run-time restrictions.
    fn prepare(&mut self, sess: &mut Session, t: &Test) -> Result<Prepared, RunError> {
        sess.set_deps_installed(&t.depends);
        if !t.depends.is_empty() {
            match apt::satisfy(
                sess,
                self.out,
                &t.depends.join(", "),
                &t.synth_depends,
                apt::Lasting::Kept,
            ) {
                Ok(()) => {}
                Err(RunError::BadPkg(_)) if t.has("skip-not-installable") => {
                    let v = Verdict::Skip("installation fails and skip-not-installable set".into());
                    self.out.report(&t.name, &v.to_string());
                    return Ok(Prepared::Skipped(v));
                }
                Err(RunError::BadPkg(m)) => {
                    self.out.report(&t.name, "FAIL badpkg");
                    self.out
                        .preport(&format!("blame: {}", self.blamed.join(" ")));
                    self.out.preport(&format!("badpkg: {m}"));
                    return Ok(Prepared::BadPkg);
                }
                Err(e) => return Err(e),
            }
        }
        if t.has("needs-sudo") {
            if let Err(reason) = provide_sudo(sess, self.out)? {
                let v = Verdict::Skip(reason);
                self.out.report(&t.name, &v.to_string());
                return Ok(Prepared::Skipped(v));
            }
        }
        Ok(Prepared::Ready)
    }
}

/// Whether a test can run after its preparation.
enum Prepared {
    Ready,
    Skipped(Verdict),
    /// Its dependencies cannot be installed (reported as `FAIL badpkg`).
    BadPkg,
}

/// autopkgtest's `_provide_sudo`: Ok(Err(reason)) when it cannot.
fn provide_sudo(sess: &mut Session, out: &Output) -> Result<Result<(), String>, RunError> {
    let root = sess.caps.contains("root-on-testbed");
    if root && sess.user.is_empty() {
        return Ok(Err(
            "Cannot enable needs-sudo restriction: no ordinary user available".into(),
        ));
    }
    let as_user = |c: &str| {
        if root {
            format!("su -s /bin/bash {} -c {}", quote(&sess.user), quote(c))
        } else {
            format!("bash -c {}", quote(c))
        }
    };
    let (exit, groups, _) = sess.capture(&as_user("id -Gn"), crate::session::Kind::Short)?;
    let in_group = exit.code == 0
        && String::from_utf8_lossy(&groups)
            .split_whitespace()
            .any(|g| g == "sudo");
    if in_group
        && sess
            .capture(&as_user("sudo -n -v"), crate::session::Kind::Short)?
            .0
            .code
            == 0
    {
        return Ok(Ok(()));
    }
    if !root {
        return Ok(Err("Cannot enable needs-sudo restriction: not root".into()));
    }
    if !sess.caps.contains("revert-full-system") {
        return Ok(Err(
            "Cannot enable needs-sudo restriction: cannot revert".into()
        ));
    }
    sess.needs_reset();
    out.info(&format!(
        "Setting up user \"{}\" to sudo without password...",
        sess.user
    ));
    let script = format!(
        "usermod -a -G sudo {}; install -d /etc/sudoers.d; echo '%sudo ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/autopkgtest-needs-sudo; chmod 440 /etc/sudoers.d/autopkgtest-needs-sudo",
        quote(&sess.user)
    );
    let (exit, _) = sess.exec_shown(
        &format!("set -e; {script}"),
        crate::session::Kind::Short,
        out,
    )?;
    if exit.code != 0 {
        return Ok(Err(format!(
            "Failed to enable needs-sudo restriction: exit status {}",
            exit.code
        )));
    }
    Ok(Ok(()))
}

fn testinfo(sess: &Session, req: &Request) -> TestInfo {
    TestInfo {
        virt_server: sess.describe(),
        kernel_version: sess.machine.kernel.clone(),
        custom_environment: req.env.clone(),
        nproc: sess.machine.nproc.clone(),
        cpu_model: sess.machine.cpu_model.clone(),
        cpu_flags: sess.machine.cpu_flags.clone(),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn now_string() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S%z")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
