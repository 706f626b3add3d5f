//! `adt-runner loop`: the unattended service. Forever: retry spooled mail,
//! select, run the package (`adt-runner run` as a child process, in a
//! process group of its own so a terminal's ^C reaches only the loop),
//! store the result, record it in the history, commit the selector's
//! cursor, report, re-render the web pages.
//!
//! A result gets a marker in `spool/pending/` (fsynced) before it is
//! stored (renamed into the results tree), recorded and reported, removed
//! only after: a crash in between is finished by the next iteration, so
//! no result goes unstored, unrecorded or unreported.
//!
//! Signals: SIGTERM or SIGINT lets the current package finish, be stored
//! and reported, then exits 0. A second one kills the run, tears the
//! testbed down (the configured teardown command for ssh testbeds; for xen
//! testbeds adt-privd does it when the run's bus connection goes away),
//! stores nothing, and exits 128+signal. SIGHUP re-reads the configuration
//! after the current package. Readiness and status go to systemd
//! (sd_notify, `notify`).
//!
//! Not for: testing one package (`pipeline`), the one-shot commands
//! (`commands`).

pub mod commands;
pub mod notify;

use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::history::{parse_summary, History, NewRun};
use crate::loopconfig::{Config, LoopArgs};
use crate::report::{mail, verdict_text};
use crate::select::Pick;
use crate::verdict::ERROR;
use crate::web::Site;

const TICK: Duration = Duration::from_millis(100);
/// How long an aborted run gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How a package's run ended.
enum Outcome {
    /// Stored and reported.
    Stored,
    /// Aborted by a second signal: nothing stored.
    Aborted,
}

/// Runs the loop; returns the exit code.
pub fn run(args: &LoopArgs) -> i32 {
    let mut cfg = match Config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("adt-runner loop: {e}");
            return ERROR;
        }
    };
    if let Err(e) = check(&cfg).and_then(|()| notify::install()) {
        eprintln!("adt-runner loop: {e}");
        return ERROR;
    }
    notify::notify("READY=1\nSTATUS=started");
    tracing::info!(results = %cfg.results.display(), selector = ?cfg.selector, "loop started");
    let code = loop {
        if notify::stops() > 0 {
            break 0;
        }
        if notify::take_reload() {
            cfg = reload(args, cfg);
        }
        // No new run while a stored result is unfinished: its prepared
        // copy (`.tmp.*`) would go with the next store of that source.
        if let Err(e) = finish_pending(&cfg) {
            eprintln!("adt-runner loop: finishing stored results: {e}; no new run until they are");
            if args.once {
                break ERROR;
            }
            idle(&cfg);
            continue;
        }
        if let Some(m) = &cfg.reporters.mail {
            if let Err(e) = mail::flush(m) {
                tracing::error!(error = %e, "cannot send spooled mail");
            }
        }
        let pick = match cfg.selector().next(false) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("adt-runner loop: selection failed: {e}");
                if args.once {
                    break ERROR;
                }
                idle(&cfg);
                continue;
            }
        };
        let Some(pick) = pick else {
            notify::notify("STATUS=idle: nothing to test");
            if args.once {
                break 0;
            }
            idle(&cfg);
            continue;
        };
        eprintln!(
            "adt-runner loop: testing {}: {}",
            pick.request.source, pick.why
        );
        notify::notify(&format!("STATUS=testing {}", pick.request.source));
        match run_one(&cfg, &pick) {
            Ok(Outcome::Stored) => {}
            Ok(Outcome::Aborted) => break 128 + notify::last_stop(),
            Err(e) => {
                eprintln!("adt-runner loop: {}: {e}", pick.request.source);
                if args.once {
                    break ERROR;
                }
                idle(&cfg);
            }
        }
        if args.once {
            break 0;
        }
    };
    notify::notify("STOPPING=1");
    eprintln!("adt-runner loop: exiting ({code})");
    code
}

/// What the loop cannot start without.
fn check(cfg: &Config) -> Result<(), String> {
    if cfg.testbed.is_none() {
        return Err("no testbed: give --testbed or `testbed` in the configuration".into());
    }
    fs::create_dir_all(&cfg.results).map_err(|e| {
        format!(
            "cannot create the results directory {}: {e}",
            cfg.results.display()
        )
    })
}

fn reload(args: &LoopArgs, old: Config) -> Config {
    notify::notify("RELOADING=1");
    let new = Config::load(args).and_then(|c| check(&c).map(|()| c));
    let cfg = match new {
        Ok(c) => {
            eprintln!("adt-runner loop: configuration reloaded");
            c
        }
        Err(e) => {
            eprintln!("adt-runner loop: configuration not reloaded, keeping the old one: {e}");
            old
        }
    };
    notify::notify("READY=1");
    cfg
}

/// Sleeps `idle_seconds`, waking early for a signal.
fn idle(cfg: &Config) {
    let end = Instant::now() + Duration::from_secs(cfg.idle_seconds);
    while Instant::now() < end && notify::stops() == 0 && !notify::reload_pending() {
        std::thread::sleep(TICK);
    }
}

/// This program's path, to run `adt-runner run` with. When the file was
/// replaced while the loop runs (a package upgrade renames the new binary
/// over the old), the kernel names the old one "PATH (deleted)": the new
/// one at PATH is run, rather than nothing until the service restarts.
fn own_exe() -> PathBuf {
    let Ok(exe) = std::env::current_exe() else {
        return "adt-runner".into();
    };
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(path) if Path::new(path).is_file() => PathBuf::from(path),
        _ => exe,
    }
}

/// The `adt-runner run` command line for `pick`.
fn run_command(cfg: &Config, pick: &Pick, out: &Path) -> Command {
    let mut c = Command::new(own_exe());
    c.arg("run").arg(&pick.request.source);
    if let Some(t) = &cfg.testbed {
        c.arg("--testbed").arg(t);
    }
    if let Some(i) = &cfg.identity {
        c.arg("--identity").arg(i);
    }
    if let Some(r) = &cfg.revert_command {
        c.arg("--revert-command").arg(r);
    }
    if let Some(l) = &cfg.login {
        c.arg("--login").arg(l);
    }
    for cap in &cfg.capabilities {
        c.arg("--capability").arg(cap);
    }
    for e in &pick.request.env {
        c.arg("--env").arg(e);
    }
    for t in &pick.request.triggers {
        c.arg("--trigger").arg(t);
    }
    if let Some(t) = &pick.request.testname {
        c.arg("--test-name").arg(t);
    }
    c.args(&cfg.run_args).arg("--output-dir").arg(out);
    c
}

/// Waits for the run; a second stop signal kills it. `None`: aborted.
fn wait(child: &mut Child) -> Result<Option<i32>, String> {
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(
                st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            ));
        }
        if notify::stops() >= 2 {
            let pg = Pid::from_raw(child.id() as i32);
            eprintln!("adt-runner loop: second signal: aborting the current test");
            let _ = killpg(pg, Signal::SIGTERM);
            let end = Instant::now() + KILL_GRACE;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(TICK);
            }
            let _ = killpg(pg, Signal::SIGKILL);
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(TICK);
    }
}

fn teardown(cfg: &Config) {
    let Some(cmd) = &cfg.teardown_command else {
        return;
    };
    eprintln!("adt-runner loop: tearing the testbed down: {cmd}");
    match Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("adt-runner loop: teardown command {cmd:?} failed: {s}"),
        Err(e) => eprintln!("adt-runner loop: cannot run teardown command {cmd:?}: {e}"),
    }
}

/// The name results are filed under: the tested source's own name, else
/// the request's (a path's last component).
fn source_name(out: &Path, pick: &Pick) -> String {
    let tested = fs::read_to_string(out.join("testpkg-version"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from));
    tested.unwrap_or_else(|| {
        Path::new(&pick.request.source)
            .file_name()
            .map_or("unknown".into(), |n| {
                n.to_string_lossy()
                    .trim_end_matches(".dsc")
                    .split('_')
                    .next()
                    .unwrap_or("unknown")
                    .to_ascii_lowercase()
            })
    })
}

fn run_one(cfg: &Config, pick: &Pick) -> Result<Outcome, String> {
    let work = cfg.work_dir().join(format!("run.{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let out = work.join("out");
    let started = Instant::now();
    let mut child = run_command(cfg, pick, &out)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start adt-runner run: {e}"))?;
    let Some(code) = wait(&mut child)? else {
        teardown(cfg);
        let _ = fs::remove_dir_all(&work);
        return Ok(Outcome::Aborted);
    };
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let missing = |n: &str| !out.join(n).exists();
    if missing("exitcode") {
        let _ = fs::write(out.join("exitcode"), format!("{code}\n"));
    }
    if missing("duration") {
        let _ = fs::write(
            out.join("duration"),
            format!("{}\n", started.elapsed().as_secs()),
        );
    }
    let source = source_name(&out, pick);
    let request = serde_json::json!({
        "source": pick.request.source,
        "request": serde_json::from_str::<serde_json::Value>(&pick.request.json()).unwrap_or_default(),
        "why": pick.why,
        "control": pick.control,
    });
    let prepared = match cfg.store().prepare(&source, &out, &request.to_string()) {
        Ok(p) => p,
        Err(e) => {
            // Keep the output for a human rather than reuse its directory.
            let keep = cfg.work_dir().join(format!(
                "unstored.{source}.{}",
                crate::results::stamp(std::time::SystemTime::now())
            ));
            let _ = fs::rename(&work, &keep);
            return Err(format!(
                "{e}; the run's output is kept in {}",
                keep.display()
            ));
        }
    };
    let stored = &prepared.stored;
    let read = |n: &str| fs::read_to_string(out.join(n)).unwrap_or_default();
    let pending = Pending {
        dir: stored.dir.clone(),
        from: Some(prepared.tmp.clone()),
        run: NewRun {
            source: source.clone(),
            version: read("testpkg-version")
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string(),
            release: cfg.release.clone(),
            arch: cfg.arch.clone(),
            started: stored.stamp.clone(),
            duration: read("duration").trim().parse().unwrap_or(0),
            exitcode: code,
            result_dir: stored.rel.clone(),
            request: pick.request.json(),
            seen: pick.seen.clone(),
            tests: parse_summary(&read("summary")),
        },
    };
    // The marker first, then the result: a crash in between leaves a
    // marker whose result `finish_pending` stores and records.
    let marker = match pending.write(cfg) {
        Ok(m) => m,
        Err(e) => {
            // Stored, though nothing will record it: better than lost.
            crate::results::commit(&prepared.tmp, &stored.dir)?;
            let _ = fs::remove_dir_all(&work);
            return Err(format!(
                "{e}; the result is stored in {} but not recorded",
                stored.dir.display()
            ));
        }
    };
    // If this fails, the marker names both places: the next iteration's
    // finish_pending tries again.
    crate::results::commit(&prepared.tmp, &stored.dir)?;
    let _ = fs::remove_dir_all(&work);
    finish(cfg, &marker, &pending)?;
    cfg.selector().commit(pick)?;
    Ok(Outcome::Stored)
}

/// A stored result still to be recorded and reported: where it is and
/// the history row it makes.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub dir: PathBuf,
    /// Where the result was prepared (`results::Store::prepare`), for as
    /// long as it may not be in `dir` yet.
    #[serde(default)]
    pub from: Option<PathBuf>,
    pub run: NewRun,
}

fn pending_dir(cfg: &Config) -> PathBuf {
    cfg.results.join("spool/pending")
}

impl Pending {
    /// The prepared copy of a result a crash left between the marker and
    /// the store (complete: `prepare` fsyncs it before the marker is
    /// written), or None when the result is in `dir` or was never prepared.
    fn unstored(&self) -> Option<&Path> {
        let from = self.from.as_deref()?;
        let stored = self.dir.join("result.tar").exists();
        (!stored && from.join("result.tar").exists()).then_some(from)
    }

    /// Writes the marker (fsynced); returns its path.
    fn write(&self, cfg: &Config) -> Result<PathBuf, String> {
        let dir = pending_dir(cfg);
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}.{}.json", self.run.started, self.run.source));
        let json = serde_json::to_vec(self).map_err(|e| e.to_string())?;
        crate::results::write_atomic(&path, &json)?;
        Ok(path)
    }
}

/// Records `p` in the history (unless a crash came after that already),
/// reports it, re-renders the web pages, and removes its marker.
fn finish(cfg: &Config, marker: &Path, p: &Pending) -> Result<(), String> {
    let mut hist = History::open(&cfg.history_path())?;
    let class = match hist.run_by_dir(&p.run.result_dir)? {
        Some(run) => run.class,
        None => hist.record(&p.run)?.1,
    };
    eprintln!(
        "adt-runner loop: {} {}: {class} (exit code {}), stored in {}",
        p.run.source,
        p.run.version,
        p.run.exitcode,
        p.dir.display()
    );
    // A reporter that fails is logged, not retried: retrying would repeat
    // the ones that worked (mail has its own spool).
    if let Err(e) = cfg
        .reporters
        .report(&p.dir, &verdict_text(class.as_str(), Some(p.run.exitcode)))
    {
        eprintln!("adt-runner loop: reporting {}: {e}", p.run.source);
    }
    if let Some(web) = &cfg.web_out {
        let site = Site {
            out: web.clone(),
            results_url: cfg.results_url.clone(),
            results_dir: cfg.results.clone(),
        };
        if let Err(e) = site.render_after_run(&hist, &p.run.source) {
            eprintln!("adt-runner loop: web report: {e}");
        }
    }
    fs::remove_file(marker).map_err(|e| format!("cannot remove {}: {e}", marker.display()))
}

/// Finishes the results a crash left stored (or about to be) but not
/// recorded or reported, oldest first: stores a prepared one, then records
/// and reports it. A marker that cannot be read, or whose result is gone,
/// is set aside (`*.bad`) with a message, not retried for ever.
pub fn finish_pending(cfg: &Config) -> Result<(), String> {
    let mut markers: Vec<PathBuf> = match fs::read_dir(pending_dir(cfg)) {
        Ok(d) => d
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", pending_dir(cfg).display())),
    };
    markers.sort();
    for marker in markers {
        let parsed = fs::read(&marker)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Pending>(&b).map_err(|e| e.to_string()))
            .and_then(|p| {
                if p.dir.join("result.tar").exists() || p.unstored().is_some() {
                    Ok(p)
                } else {
                    Err(format!("its result {} is gone", p.dir.display()))
                }
            });
        match parsed {
            Ok(p) => {
                eprintln!(
                    "adt-runner loop: finishing {} {}, stored before an interruption",
                    p.run.source, p.run.version
                );
                if let Some(from) = p.unstored() {
                    crate::results::commit(from, &p.dir)?;
                }
                finish(cfg, &marker, &p)?;
            }
            Err(e) => {
                let aside = marker.with_extension("json.bad");
                eprintln!(
                    "adt-runner loop: {}: {e}; set aside as {}",
                    marker.display(),
                    aside.display()
                );
                let _ = fs::rename(&marker, &aside);
            }
        }
    }
    Ok(())
}
