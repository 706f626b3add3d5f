//! The opened testbed as the DEP-8 engine sees it: scratch directory,
//! normal user, architecture, root commands with kinds and timeouts,
//! copies that hand files to the normal user, and the revert bookkeeping
//! (autopkgtest's `Testbed` class).
//!
//! Not for: transport (`ssh`), testbed life cycle (`testbed`, `xen`), or
//! what the commands are for (`apt`, `source`, `run`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::aptconf::{self, AptSetup};
use crate::error::RunError;
use crate::output::Output;
use crate::ssh::{quote, Exit};
use crate::testbed::Testbed;

/// Command kinds and their timeouts in seconds (autopkgtest's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Short,
    Copy,
    Install,
    Test,
    Build,
}

/// Timeouts per kind; `--timeout-KIND` overrides.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub short: u64,
    pub copy: u64,
    pub install: u64,
    pub test: u64,
    pub build: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            short: 100,
            copy: 300,
            install: 3000,
            test: 10000,
            build: 100000,
        }
    }
}

impl Timeouts {
    /// The limit for `kind`; 0 is none, as autopkgtest's `signal.alarm(0)`.
    fn of(&self, kind: Kind) -> Option<u64> {
        let secs = match kind {
            Kind::Short => self.short,
            Kind::Copy => self.copy,
            Kind::Install => self.install,
            Kind::Test => self.test,
            Kind::Build => self.build,
        };
        (secs > 0).then_some(secs)
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Short => "short",
        Kind::Copy => "copy",
        Kind::Install => "install",
        Kind::Test => "test",
        Kind::Build => "build",
    }
}

/// Kills whatever a test leaves behind holding its output pipes (so the
/// ssh channel can close), sparing its own ancestors and sshd.
const WRAPPER: &str = r#"#!/bin/sh
out=$(readlink /proc/$$/fd/1); err=$(readlink /proc/$$/fd/2)
rc=0; "$@" || rc=$?
keep=" $$ "; p=$$
while [ "${p:-1}" -gt 1 ]; do p=$(cut -d' ' -f4 "/proc/$p/stat" 2>/dev/null) || break; keep="$keep$p "; done
esc() { printf '%s' "$1" | sed -e 's/[][*?\\]/\\&/g'; }
for pid in $(find /proc/[0-9]*/fd -lname "$(esc "$out")" -o -lname "$(esc "$err")" 2>/dev/null | cut -d/ -f3 | sort -u); do
    case "$keep" in *" $pid "*) continue ;; esac
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ] && continue
    kill -9 "$pid" 2>/dev/null || true
done
exit $rc
"#;

/// Creates an ordinary user as autopkgtest's create-normal-user does:
/// `test`, or a random name if taken; with an argument (after a revert),
/// that name again, made the same way.
const CREATE_USER: &str = r#"set -eu
create() {
    if command -v adduser >/dev/null; then adduser --disabled-login --gecos 'Temporary autopkgtest user,,,' "$1" >/dev/null
    else useradd --comment 'Temporary autopkgtest user' --create-home --expiredate '' --user-group "$1"; fi
    echo "$1" > /run/autopkgtest-normal-user
    echo "$1"
}
if [ $# = 1 ]; then create "$1"; exit 0; fi
for i in $(seq 0 20); do
    if [ "$i" = 0 ]; then user=test; else user=$(basename "$(mktemp -u /tmp/test-XXXXXX)"); fi
    getent passwd "$user" >/dev/null && continue
    create "$user"; exit 0
done
echo "cannot find a free user name" >&2; exit 1
"#;

/// Seconds the outer safety timeout of a test waits beyond the test's own
/// (which runs inside the user switch, so that it kills the test's own
/// process group).
pub const TEST_GRACE: u64 = 60;

/// What autopkgtest's `--setup-commands`, `--setup-commands-boot` and
/// `--copy` ask of every opening of the testbed (after each revert too).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Shell commands run as root (`sh -ec`) after the normal user is made.
    pub commands: Vec<String>,
    /// Shell commands run as root last, after `testbed-packages`.
    pub boot_commands: Vec<String>,
    /// Host file or directory, testbed path: copied in before `commands`.
    pub copies: Vec<(PathBuf, String)>,
    /// `--user`: the user tests and builds run as, instead of the login
    /// user or one made for the run.
    pub user: Option<String>,
    /// apt sources and pinning, set up after the copies.
    pub apt: AptSetup,
}

/// The exit status with which a setup command says the package, not the
/// testbed, is at fault (autopkgtest's convention).
const SETUP_BADPKG: i32 = 100;

/// What `post_boot_setup` learns about the machine.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub arch: String,
    pub kernel: Option<String>,
    pub nproc: Option<String>,
    pub cpu_model: Option<String>,
    pub cpu_flags: Option<String>,
}

/// An opened testbed.
pub struct Session {
    tb: Box<dyn Testbed>,
    pub caps: BTreeSet<String>,
    pub scratch: String,
    /// The normal user ("" when there is none).
    pub user: String,
    created_user: bool,
    pub machine: Machine,
    pub eatmydata: String,
    /// Whether the testbed, as last opened or reverted, has apt-ftparchive.
    pub has_apt_ftparchive: bool,
    sudo: bool,
    modified: bool,
    deps_installed: Vec<String>,
    pub timeouts: Timeouts,
    setup: Setup,
    /// The release apt sources name first (or `--apt-default-release`),
    /// found once and kept across reverts, as autopkgtest keeps it.
    pub default_release: RefCell<Option<String>>,
    /// Releases pinned at the last opening, for the fallback to drop one
    /// by one.
    pub pinned: RefCell<Vec<String>>,
}

impl Session {
    /// Opens `tb`: scratch directory, normal user, setup commands, machine
    /// facts, and `testbed-packages` in the output directory.
    /// `internet`: whether tests may count on the network (not
    /// `--needs-internet skip`).
    pub fn open(
        tb: Box<dyn Testbed>,
        out: &Output,
        timeouts: Timeouts,
        setup: Setup,
        internet: bool,
    ) -> Result<Session, RunError> {
        let login = tb.ssh().target().user.clone();
        let mut caps = tb.caps();
        let sudo = login != "root";
        let mut s = Session {
            tb,
            caps: BTreeSet::new(),
            scratch: String::new(),
            user: String::new(),
            created_user: false,
            machine: Machine::default(),
            eatmydata: String::new(),
            has_apt_ftparchive: false,
            sudo,
            modified: false,
            deps_installed: Vec::new(),
            timeouts,
            setup,
            default_release: RefCell::new(None),
            pinned: RefCell::new(Vec::new()),
        };
        if !sudo {
            caps.insert("root-on-testbed".into());
        } else {
            // As autopkgtest-virt-ssh's can_sudo: sudo that works but
            // complains (typically "unable to resolve host") would put its
            // complaint in every command's stderr, so the testbed fails.
            // (Run as the login user itself, not through sudo.)
            s.sudo = false;
            let (exit, _, err) = s.capture("sudo -n /bin/true", Kind::Short)?;
            if exit.code == 0 && !err.is_empty() {
                return Err(RunError::Testbed(format!(
                    "sudo failed with stderr: \"{}\"",
                    String::from_utf8_lossy(&err).trim_end()
                )));
            }
            if exit.code == 0 {
                caps.insert("root-on-testbed".into());
                s.sudo = true;
            }
        }
        if internet {
            caps.insert("has_internet".into());
        }
        s.caps = caps;
        if login != "root" && s.caps.contains("root-on-testbed") {
            s.user = login;
        }
        if let Some(u) = &s.setup.user {
            s.user = u.clone();
        }
        let made = s.capture("d=$(mktemp --directory --tmpdir adt-runner.XXXXXX) && chmod 1777 \"$d\" && echo \"$d\"", Kind::Short)?;
        s.scratch = String::from_utf8_lossy(&made.1).trim().to_string();
        s.opened(out)?;
        Ok(s)
    }

    fn probe(&self, cmd: &str) -> Result<bool, RunError> {
        let (exit, _, _) = self.capture(cmd, Kind::Short)?;
        Ok(exit.code == 0)
    }

    /// autopkgtest's `_opened`: after open and after every revert.
    fn opened(&mut self, out: &Output) -> Result<(), RunError> {
        self.check(&format!(
            "mkdir -p --mode=1777 {0} && chmod 1777 {0}",
            quote(&self.scratch)
        ))?;
        self.tb
            .ssh()
            .write_file(&self.wrapper(), WRAPPER.as_bytes())?;
        self.check(&format!("chmod 755 {}", quote(&self.wrapper())))?;
        self.setup_user()?;
        self.run_setup(out)?;
        self.probe_machine(out)?;
        if self.probe("command -v dpkg-query >/dev/null")? {
            let (exit, pkgs, _) = self.capture(
                "dpkg-query --show -f '${Package}\\t${Version}\\n'",
                Kind::Short,
            )?;
            if exit.code == 0 {
                out.write("testbed-packages", &String::from_utf8_lossy(&pkgs));
            }
        }
        let boot = self.setup.boot_commands.clone();
        self.run_setup_commands(out, &boot, "AUTOPKGTEST_IS_SETUP_BOOT_COMMAND", "boot ")
    }

    /// autopkgtest's `run_setup_commands`: `--copy`, then
    /// `--setup-commands`.
    fn run_setup(&mut self, out: &Output) -> Result<(), RunError> {
        self.pinned.borrow_mut().clear();
        if self.setup.commands.is_empty() && self.setup.copies.is_empty() && !self.setup.apt.any() {
            return Ok(());
        }
        out.info("@@@@@@@@@@@@@@@@@@@@ test bed setup");
        for (host, tb) in self.setup.copies.clone() {
            tracing::debug!("copying file {} to testbed {tb}", host.display());
            self.copy_down(&host, &tb)?;
        }
        let apt = self.setup.apt.clone();
        let pinned = aptconf::apply(self, &apt)?;
        *self.pinned.borrow_mut() = pinned;
        let commands = self.setup.commands.clone();
        self.run_setup_commands(out, &commands, "AUTOPKGTEST_IS_SETUP_COMMAND", "")
    }

    /// Runs each of `commands` as root with `sh -ec`, output shown and
    /// logged. Exit status 100 blames the package; any other failure is
    /// the testbed's (autopkgtest's words for both).
    fn run_setup_commands(
        &self,
        out: &Output,
        commands: &[String],
        marker: &str,
        what: &str,
    ) -> Result<(), RunError> {
        let mut env = format!("{marker}=1");
        if !self.user.is_empty() {
            let u = quote(&self.user);
            env.push_str(&format!(" AUTOPKGTEST_NORMAL_USER={u} ADT_NORMAL_USER={u}"));
        }
        for c in commands {
            let script = format!("env {env} sh -ec {}", quote(c));
            let mut shown = out.stream_plain();
            let mut err = out.stream(true, None);
            let exit = self.exec(&script, Kind::Install, &mut shown, &mut err)?;
            let _ = io::stderr().flush();
            match exit.code {
                0 => {}
                SETUP_BADPKG => {
                    return Err(RunError::BadPkg(format!(
                        "testbed {what}setup commands failed with status 100"
                    )))
                }
                rc => {
                    return Err(RunError::Testbed(format!(
                        "testbed {what}setup commands failed with status {rc}"
                    )))
                }
            }
        }
        Ok(())
    }

    fn setup_user(&mut self) -> Result<(), RunError> {
        let root = self.caps.contains("root-on-testbed");
        if self.created_user {
            // the same user again, made the same way (adduser: its
            // groups, home mode, shell and GECOS as before the revert)
            let script = format!("sh -euc {} sh {}", quote(CREATE_USER), quote(&self.user));
            self.check(&script)?;
        } else if root && self.user.is_empty() && self.caps.contains("revert-full-system") {
            let made = self.check(CREATE_USER)?;
            self.user = made.trim().to_string();
            self.created_user = true;
        }
        Ok(())
    }

    fn probe_machine(&mut self, out: &Output) -> Result<(), RunError> {
        let script = "dpkg --print-architecture; echo \"$(command -v eatmydata || true)\"; echo \"$(command -v apt-ftparchive || true)\"; uname -srv; nproc; cat /proc/cpuinfo 2>/dev/null || true";
        let text = self.check(script)?;
        let mut lines = text.lines();
        self.machine.arch = lines.next().unwrap_or_default().trim().to_string();
        self.eatmydata = lines.next().unwrap_or_default().trim().to_string();
        self.has_apt_ftparchive = !lines.next().unwrap_or_default().trim().is_empty();
        let kernel = lines.next().unwrap_or_default().trim().to_string();
        out.info(&format!("testbed dpkg architecture: {}", self.machine.arch));
        if self.machine.kernel.is_none() {
            out.info(&format!("testbed running kernel: {kernel}"));
            self.machine.kernel = Some(kernel);
        }
        if self.machine.nproc.is_none() {
            self.machine.nproc = lines.next().map(|l| l.trim().to_string());
            let rest: Vec<&str> = lines.collect();
            self.machine.cpu_model = cpu_field(&rest, &["model name", "cpu"]);
            self.machine.cpu_flags = cpu_field(&rest, &["flags", "features"]);
        }
        Ok(())
    }

    /// Path of the output-pipe wrapper in the testbed.
    pub fn wrapper(&self) -> String {
        format!("{}/wrapper.sh", self.scratch)
    }

    /// The `describe` of the testbed, for testinfo.json.
    pub fn describe(&self) -> String {
        self.tb.describe()
    }

    /// The command line that runs `script` as root (through sudo when the
    /// login user is not root), with the install environment if asked.
    fn root_command(&self, script: &str, kind: Kind) -> String {
        let env = if kind == Kind::Install {
            "env DEBIAN_FRONTEND=noninteractive APT_LISTBUGS_FRONTEND=none APT_LISTCHANGES_FRONTEND=none "
        } else {
            ""
        };
        let sudo = if self.sudo { "sudo -n " } else { "" };
        format!("{sudo}{env}sh -c {}", quote(script))
    }

    /// `cmd` prefixed with sudo when the login user is not root.
    pub fn root_command_for_test(&self, cmd: &str) -> String {
        if self.sudo {
            format!("sudo -n {cmd}")
        } else {
            cmd.to_string()
        }
    }

    /// Runs `script` as root with output going to `out`/`err`.
    pub fn exec(
        &self,
        script: &str,
        kind: Kind,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Exit, RunError> {
        let cmd = self.root_command(script, kind);
        let exit = auxverb(
            self.tb
                .ssh()
                .run(&cmd, None, out, err, self.timeouts.of(kind))?,
        )?;
        if exit.timed_out && kind != Kind::Test {
            return Err(RunError::Testbed(format!(
                "timed out on command \"{script}\" (kind: {})",
                kind_name(kind)
            )));
        }
        Ok(exit)
    }

    /// Runs `script` as root and captures (exit, stdout, stderr).
    pub fn capture(&self, script: &str, kind: Kind) -> Result<(Exit, Vec<u8>, Vec<u8>), RunError> {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let exit = self.exec(script, kind, &mut o, &mut e)?;
        Ok((exit, o, e))
    }

    /// autopkgtest's `check_exec`: must succeed without stderr; stdout.
    pub fn check(&self, script: &str) -> Result<String, RunError> {
        let (exit, o, e) = self.capture(script, Kind::Short)?;
        if !e.is_empty() {
            let e = String::from_utf8_lossy(&e);
            return Err(RunError::Error(format!(
                "\"{script}\" failed with stderr \"{e}\""
            )));
        }
        if exit.code != 0 {
            return Err(RunError::Error(format!(
                "\"{script}\" failed with status {}",
                exit.code
            )));
        }
        Ok(String::from_utf8_lossy(&o).into_owned())
    }

    /// `script` run as the normal user when there is one (autopkgtest's
    /// `source_rules_command` rule).
    pub fn as_user(&self, script: &str) -> String {
        if !self.user.is_empty() && self.caps.contains("root-on-testbed") {
            format!(
                "su --shell=/bin/sh {} -c {}",
                quote(&self.user),
                quote(&format!("set -e; {script}"))
            )
        } else {
            script.to_string()
        }
    }

    /// Copies a host file or tree into the testbed, handing it to the
    /// normal user.
    pub fn copy_down(&self, host: &Path, tb: &str) -> Result<(), RunError> {
        let parent = Path::new(tb)
            .parent()
            .map_or("/".into(), |p| p.display().to_string());
        self.check(&format!("mkdir -p {}", quote(&parent)))?;
        self.tb
            .ssh()
            .copy_down(host, tb, self.timeouts.of(Kind::Copy))?;
        if !self.user.is_empty() {
            let chown = format!("chown -R {} -- {}", quote(&self.user), quote(tb));
            let (exit, _, _) = self.capture(&chown, Kind::Copy)?;
            if exit.code != 0 {
                self.check(&format!("chmod -R go+rwX -- {}", quote(tb)))?;
            }
        }
        Ok(())
    }

    /// Copies a testbed file or tree to the host.
    pub fn copy_up(&self, tb: &str, host: &Path, is_dir: bool) -> Result<(), RunError> {
        if let Some(parent) = host.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RunError::Error(format!("cannot create {}: {e}", parent.display())))?;
        }
        Ok(self
            .tb
            .ssh()
            .copy_up(tb, host, is_dir, self.timeouts.of(Kind::Copy))?)
    }

    /// Whether the testbed can revert (to the state it was opened in).
    /// The run's apt sources and pinning options.
    pub fn apt_setup(&self) -> &AptSetup {
        &self.setup.apt
    }

    pub fn can_revert(&self) -> bool {
        self.caps.contains("revert")
    }

    /// Marks the testbed as needing a revert before the next test.
    pub fn needs_reset(&mut self) {
        self.modified = true;
    }

    /// autopkgtest's `reset`: revert when possible and when the testbed was
    /// modified or holds dependencies the next test does not want.
    pub fn reset(&mut self, deps_new: &[String], out: &Output) -> Result<(), RunError> {
        let stale = self.deps_installed.iter().any(|d| !deps_new.contains(d));
        if self.can_revert() && (self.modified || stale) {
            out.info("reverting testbed");
            self.tb.revert()?;
            self.opened(out)?;
        }
        self.modified = false;
        Ok(())
    }

    /// Records the dependencies now installed.
    pub fn set_deps_installed(&mut self, deps: &[String]) {
        self.deps_installed = deps.to_vec();
    }

    /// Runs the test command line `cmd` (not wrapped: the caller chooses
    /// the user) with live output.
    pub fn run_test(
        &self,
        cmd: &str,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Exit, RunError> {
        let limit = self.timeouts.of(Kind::Test).map(|t| t + TEST_GRACE);
        auxverb(self.tb.ssh().run(cmd, None, out, err, limit)?)
    }

    /// Runs `script` as root with output shown live (install and build
    /// steps: autopkgtest shows their output too).
    pub fn exec_shown(
        &self,
        script: &str,
        kind: Kind,
        out: &Output,
    ) -> Result<(Exit, Vec<u8>), RunError> {
        let mut err = Vec::new();
        let mut shown = out.stream_plain();
        let exit = self.exec(script, kind, &mut shown, &mut err)?;
        let _ = io::stderr().flush();
        Ok((exit, err))
    }

    /// Releases the testbed.
    pub fn stop(&mut self) -> Result<(), RunError> {
        // After a failed revert there is nothing left to clean inside.
        if self.tb.is_up() {
            let _ = self.check(&format!("rm -rf -- {}", quote(&self.scratch)));
        }
        Ok(self.tb.stop()?)
    }
}

/// The exit codes autopkgtest's ssh testbed gives a command: 254 is its
/// "auxverb failed", a testbed failure; 255 (ssh's own failure) is
/// rewritten to 253 by autopkgtest-virt-ssh, so a command's own 255 reads
/// as 253.
fn auxverb(mut exit: Exit) -> Result<Exit, RunError> {
    match exit.code {
        254 => Err(RunError::Testbed(
            "testbed auxverb failed with exit code 254".into(),
        )),
        255 => {
            exit.code = 253;
            Ok(exit)
        }
        _ => Ok(exit),
    }
}

fn cpu_field(lines: &[&str], names: &[&str]) -> Option<String> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        names
            .iter()
            .any(|n| k.trim().eq_ignore_ascii_case(n))
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_254_is_a_testbed_failure_and_255_reads_as_253() {
        let exit = |code| Exit {
            code,
            timed_out: false,
        };
        let e = auxverb(exit(254)).unwrap_err();
        assert!(
            matches!(&e, RunError::Testbed(m) if m == "testbed auxverb failed with exit code 254")
        );
        assert_eq!(auxverb(exit(255)).unwrap().code, 253);
        assert_eq!(auxverb(exit(1)).unwrap().code, 1);
    }

    #[test]
    fn a_zero_timeout_is_no_limit() {
        let t = Timeouts {
            test: 0,
            ..Timeouts::default()
        };
        assert_eq!(t.of(Kind::Test), None);
        assert_eq!(t.of(Kind::Short), Some(100));
    }
}
