//! Running one test in the testbed as autopkgtest's `run_test` does: the
//! package list, the tree in place, the environment (AUTOPKGTEST_TMP,
//! AUTOPKGTEST_ARTIFACTS, AUTOPKGTEST_NORMAL_USER, ...), the right user,
//! live separate stdout/stderr, the verdict, artifacts.
//!
//! Not for: dependencies (`apt`) or the order of tests (`pipeline`).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;

use crate::dep8::Test;
use crate::error::RunError;
use crate::output::Output;
use crate::session::{Kind, Session};
use crate::ssh::quote;
use crate::verdict::{decide, Facts, NeedsInternet, Verdict};

/// The source tree: on the host (a copy) and in the testbed.
pub struct Tree {
    pub host: std::path::PathBuf,
    pub tb: String,
}

/// What the caller passes through from the command line.
pub struct Options<'a> {
    pub env: &'a [String],
    pub build_parallel: Option<String>,
    pub needs_internet: NeedsInternet,
}

/// Runs `test`; returns its verdict (already reported).
pub fn run_test(
    sess: &Session,
    out: &Output,
    tree: &Tree,
    test: &Test,
    opts: &Options,
) -> Result<Verdict, RunError> {
    let info = |m: &str| out.info(&format!("test {}: {m}", test.name));
    if let Some(p) = &test.path {
        if !tree.host.join(p).exists() {
            return Err(RunError::BadPkg(format!("{p} does not exist")));
        }
    }
    record_packages(sess, out, &test.name)?;
    if sess
        .capture(&format!("test -e {}", quote(&tree.tb)), Kind::Short)?
        .0
        .code
        != 0
    {
        sess.copy_down(&tree.host, &tree.tb)?;
    }
    let artifacts = format!("{}/{}-artifacts", sess.scratch, test.name);
    let tmp = format!("{}/autopkgtest_tmp", sess.scratch);
    let cmd = test_command(sess, tree, test, opts, &artifacts, &tmp)?;
    if let Some(c) = &test.command {
        info(c);
    }
    info("[-----------------------");
    let so_path = out.path(&format!("{}-stdout", test.name));
    let se_path = out.path(&format!("{}-stderr", test.name));
    let create = |p: &Path| {
        File::create(p).map_err(|e| RunError::Error(format!("cannot create {}: {e}", p.display())))
    };
    let mut so = out.stream(false, Some(create(&so_path)?));
    let mut se = out.stream(true, Some(create(&se_path)?));
    let started = std::time::Instant::now();
    let exit = match sess.run_test(&cmd, &mut so, &mut se) {
        Ok(exit) => exit,
        Err(e) => {
            // A testbed failure during the test: autopkgtest copies the
            // output files up only after the test, so it has none. The
            // empty ones go here too; what the test wrote stays.
            for (stream, path) in [(&so, &so_path), (&se, &se_path)] {
                if stream.written == 0 {
                    let _ = fs::remove_file(path);
                }
            }
            return Err(e);
        }
    };
    let timed_out = exit.timed_out
        || (sess.timeouts.test > 0
            && matches!(exit.code, 124 | 137)
            && started.elapsed().as_secs() >= sess.timeouts.test);
    info("-----------------------]");
    info(" - - - - - - - - - - results - - - - - - - - - -");
    let facts = Facts {
        exit_code: if timed_out { 1 } else { exit.code },
        timed_out,
        stderr_first_line: (se.written > 0).then(|| se.first_line()),
    };
    if timed_out {
        out.error(&format!("timed out on command \"{cmd}\" (kind: test)"));
    }
    let verdict = decide(test, &facts, opts.needs_internet);
    out.report(&test.name, &verdict.to_string());
    if so.written == 0 {
        let _ = fs::remove_file(&so_path);
    }
    if se.written > 0 && !test.has("allow-stderr") {
        info(" - - - - - - - - - - stderr - - - - - - - - - -");
        if let Ok(text) = fs::read(&se_path) {
            use std::io::Write;
            let _ = std::io::stderr().write_all(&text);
            out.log_bytes(&text);
        }
    } else if se.written == 0 {
        let _ = fs::remove_file(&se_path);
    }
    copy_artifacts(sess, out, &artifacts)?;
    sess.check(&format!("rm -rf {} {}", quote(&artifacts), quote(&tmp)))?;
    Ok(verdict)
}

/// `<test>-packages`: what is installed now and was not in the pristine
/// testbed (by package name, as `join -v2` compares).
fn record_packages(sess: &Session, out: &Output, name: &str) -> Result<(), RunError> {
    let (exit, now, _) = sess.capture(
        "dpkg-query --show -f '${Package}\\t${Version}\\n'",
        Kind::Short,
    )?;
    if exit.code != 0 {
        return Ok(());
    }
    let base = fs::read_to_string(out.path("testbed-packages")).unwrap_or_default();
    let base: BTreeSet<&str> = base.lines().filter_map(|l| l.split('\t').next()).collect();
    let now = String::from_utf8_lossy(&now);
    let new: String = now
        .lines()
        .filter(|l| !base.contains(l.split('\t').next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect();
    out.write(&format!("{name}-packages"), &new);
    Ok(())
}

/// The full command line: environment script, user switch, timeout.
fn test_command(
    sess: &Session,
    tree: &Tree,
    test: &Test,
    opts: &Options,
    artifacts: &str,
    tmp: &str,
) -> Result<String, RunError> {
    let cpu = opts
        .build_parallel
        .clone()
        .or_else(|| sess.machine.nproc.clone())
        .unwrap_or_else(|| "1".into());
    let mut script = format!(
        "set -e; export USER=`id -nu`; . /etc/profile >/dev/null 2>&1 || true;  . ~/.profile >/dev/null 2>&1 || true; \
         buildtree=\"{t}\"; mkdir -p -m 1777 -- \"{a}\"; export AUTOPKGTEST_ARTIFACTS=\"{a}\"; export ADT_ARTIFACTS=\"$AUTOPKGTEST_ARTIFACTS\"; \
         mkdir -p -m 755 \"{tmp}\"; export AUTOPKGTEST_TMP=\"{tmp}\"; export ADTTMP=\"$AUTOPKGTEST_TMP\"; \
         export DEBIAN_FRONTEND=noninteractive; export LANG=C.UTF-8; export DEB_BUILD_OPTIONS=parallel={cpu}; \
         unset LANGUAGE LC_CTYPE LC_NUMERIC LC_TIME LC_COLLATE LC_MONETARY LC_MESSAGES LC_PAPER LC_NAME LC_ADDRESS \
         LC_TELEPHONE LC_MEASUREMENT LC_IDENTIFICATION LC_ALL;cd \"$buildtree\"; ",
        t = tree.tb,
        a = artifacts,
    );
    // As autopkgtest: its user is "" (exported, empty) on a testbed with
    // root but no normal user, and unset only without root.
    let has_user = !sess.user.is_empty() || sess.caps.contains("root-on-testbed");
    if test.has("needs-root") && has_user {
        script += &format!(
            "export AUTOPKGTEST_NORMAL_USER={0}; export ADT_NORMAL_USER={0}; ",
            sess.user
        );
    }
    for e in opts.env {
        script += &format!("export {}; ", quote(e));
    }
    let test_cmd = match (&test.path, &test.command) {
        (Some(p), _) => {
            let full = format!("{}/{p}", tree.tb);
            script += &format!("chmod +x {full}; ");
            full
        }
        (None, Some(c)) => format!("bash -ec {}", quote(c)),
        (None, None) => unreachable!("a test has a path or a command"),
    };
    // The timeout runs inside the user switch: su puts the test in a
    // process group of its own, which only a timeout in there can kill.
    script += &format!(
        "exec {} timeout -k 10 {} {test_cmd};",
        quote(&sess.wrapper()),
        sess.timeouts.test
    );
    let root = sess.caps.contains("root-on-testbed");
    if !test.has("needs-root") && !sess.user.is_empty() && !root {
        // only a --user can be set without root (autopkgtest's words)
        return Err(RunError::Error(format!(
            "cannot change to user {} without root-on-testbed",
            sess.user
        )));
    }
    let user = if !test.has("needs-root") && !sess.user.is_empty() {
        if test.has("rw-build-tree") {
            sess.check(&format!(
                "chown -R {} {}",
                quote(&sess.user),
                quote(&tree.tb)
            ))?;
        }
        Some(sess.user.as_str())
    } else if root {
        Some("root")
    } else {
        None
    };
    let inner = match user {
        Some(u) => format!("su -s /bin/bash {} -c {}", quote(u), quote(&script)),
        None => format!("bash -c {}", quote(&script)),
    };
    Ok(sess.root_command_for_test(&inner))
}

/// Copies the test's artifacts into `artifacts/` of the output dir.
fn copy_artifacts(sess: &Session, out: &Output, artifacts: &str) -> Result<(), RunError> {
    let dest = out.path("artifacts");
    let (_, listing, _) = sess.capture(
        &format!("ls -A {} 2>/dev/null", quote(artifacts)),
        Kind::Short,
    )?;
    if !listing.is_empty() {
        sess.copy_up(artifacts, &dest, true)?;
    }
    Ok(())
}
