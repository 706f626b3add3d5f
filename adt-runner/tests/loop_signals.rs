//! `adt-runner loop` end to end on the sshd testbed (tests/testbed/), with
//! a real selector program (tests/data/loop/queue-selector), a real SMTP
//! server and sd_notify on a real socket: three packages in order; SIGTERM
//! during the second lets it finish, be stored and reported, and the third
//! is picked next time; a second signal aborts and tears the testbed down;
//! SIGHUP reloads the configuration.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const EXE: &str = env!("CARGO_BIN_EXE_adt-runner");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/loop")
        .join(name)
}

/// An sshd testbed (tests/testbed/start), stopped when dropped.
struct Testbed {
    dir: tempfile::TempDir,
    port: String,
    key: String,
    pid: i32,
}

impl Testbed {
    fn start() -> Result<Testbed, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("the sshd testbed needs root (namespaces, overlayfs)".into());
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(repo().join("tests/testbed/start"))
            .arg(dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "testbed did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_string()
        };
        Ok(Testbed {
            port: get("PORT"),
            key: get("KEY"),
            pid: get("PID").parse().unwrap(),
            dir,
        })
    }

    /// Processes named `comm` inside the testbed.
    fn processes(&self, comm: &str) -> Vec<i32> {
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.pid)).unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| {
                std::fs::read_link(format!("/proc/{p}/ns/pid"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            })
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
            })
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/testbed/stop"))
            .arg(self.dir.path())
            .status();
    }
}

/// A service directory: configuration, queue, results, notify socket.
struct Service {
    dir: tempfile::TempDir,
    notify: UnixDatagram,
    smtp: common::Smtp,
    /// Loops started, killed on drop if a failed test left one running.
    started: std::cell::RefCell<Vec<i32>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        for pid in self.started.borrow().iter() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("loop") {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        }
    }
}

impl Service {
    fn new(tb: &Testbed, queue: &[String]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("queue"), queue.join("\n") + "\n").unwrap();
        let notify = UnixDatagram::bind(dir.path().join("notify")).unwrap();
        notify.set_nonblocking(true).unwrap();
        let smtp = common::Smtp::start(common::free_port(), &dir.path().join("maildir"));
        let s = Service {
            dir,
            notify,
            smtp,
            started: Default::default(),
        };
        s.configure(
            tb,
            &format!(
                "{} {}",
                data("queue-selector").display(),
                s.path("queue").display()
            ),
            "",
        );
        s
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes the configuration; `extra` is appended verbatim.
    fn configure(&self, tb: &Testbed, selector: &str, extra: &str) {
        self.configure_mail_to(tb, selector, "loop.example.org", extra)
    }

    /// The same, mail going to `{source}@DOMAIN`.
    fn configure_mail_to(&self, tb: &Testbed, selector: &str, domain: &str, extra: &str) {
        // The run itself gets no revert command (ssh testbeds without one
        // are static machines); the loop's teardown reverts after an abort.
        // -B: the trees' tests install nothing, so nothing is built.
        let toml = format!(
            "results = \"{results}\"\nselector = \"{selector}\"\ntestbed = \"ssh:root@127.0.0.1:{port}\"\n\
             run-args = [\"-B\"]\n\
             identity = \"{key}\"\nteardown-command = \"{revert} {tbdir}\"\nrelease = \"bookworm\"\n\
             arch = \"amd64\"\nidle-seconds = 1\nweb-out = \"{web}\"\n\
             [mail]\nsmtp = \"127.0.0.1:{smtp}\"\nfrom = \"adt-runner <runner@loop.example.org>\"\n\
             to = \"{{source}}@{domain}\"\n{extra}",
            results = self.path("results").display(),
            port = tb.port,
            key = tb.key,
            revert = repo().join("tests/testbed/revert").display(),
            tbdir = tb.dir.path().display(),
            web = self.path("web").display(),
            smtp = self.smtp.port,
        );
        std::fs::write(self.path("runner.toml"), toml).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(EXE), args)
    }

    fn command_of(&self, exe: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(exe);
        c.args(args)
            .arg("--config")
            .arg(self.path("runner.toml"))
            .env("NOTIFY_SOCKET", self.path("notify"))
            .stdin(Stdio::null());
        c
    }

    fn start(&self, log: &str) -> Child {
        self.start_from(Path::new(EXE), log)
    }

    /// The loop run from `exe` (a copy of the program, say).
    fn start_from(&self, exe: &Path, log: &str) -> Child {
        let f = std::fs::File::create(self.path(log)).unwrap();
        let child = self
            .command_of(exe, &["loop"])
            .stderr(f)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.started.borrow_mut().push(child.id() as i32);
        child
    }

    /// Stored result directories of `source`.
    fn results(&self, source: &str) -> Vec<PathBuf> {
        let prefix = &source[..1];
        let dir = self
            .path("results/bookworm/amd64")
            .join(prefix)
            .join(source);
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with('@'))
            .collect();
        v.sort();
        v
    }

    fn notifications(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.notify.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    /// Whether the run in progress printed `marker` in its transcript.
    fn running_log_has(&self, marker: &str) -> bool {
        std::fs::read_dir(self.path("results/.work"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("out/log")).is_ok_and(|l| l.contains(marker))
            })
    }
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `wait_for`, with the loop's log (`log` under the service's directory)
/// and the running package's log in the message when it times out.
fn wait_logged(svc: &Service, log: &str, what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= Duration::from_secs(secs) {
            let running: Vec<String> = std::fs::read_dir(svc.path("results/.work"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("out/log")).ok())
                .collect();
            panic!(
                "timed out waiting for {what}; loop log:\n{}\nrunning:\n{}",
                std::fs::read_to_string(svc.path(log)).unwrap_or_default(),
                running.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> i32 {
    let mut code = None;
    wait_for("the loop to exit", secs, || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code.unwrap()
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn queue_line(pkg: &str, json: &str) -> String {
    format!("{} {json}", data(pkg).display())
        .trim_end()
        .to_string()
}

#[test]
fn three_packages_in_order_and_sigterm_lets_the_second_finish() {
    let tb = match Testbed::start() {
        Ok(t) => t,
        Err(why) => return adt_systest::skip(&why),
    };
    let svc = Service::new(
        &tb,
        &[
            queue_line("first", r#"{"triggers": ["glibc/2.36-9"]}"#),
            queue_line("second", r#"{"env": ["LOOP_SLEEP=6"]}"#),
            queue_line("third", ""),
        ],
    );
    let mut lp = svc.start("loop1.log");
    wait_for("the second test to start", 120, || {
        svc.running_log_has("LOOP-SECOND-STARTED")
    });
    assert_eq!(
        svc.results("adt-loop-first").len(),
        1,
        "the first was stored before"
    );
    signal(&lp, Signal::SIGTERM);
    let code = wait_exit(&mut lp, 120);
    let log = std::fs::read_to_string(svc.path("loop1.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        svc.results("adt-loop-second").len(),
        1,
        "the second finished and was stored: {log}"
    );
    assert!(
        svc.results("adt-loop-third").is_empty(),
        "the third waits: {log}"
    );
    // A request's triggers reach its run (testinfo.json records them).
    let first = adt_runner::results::load(&svc.results("adt-loop-first")[0]).unwrap();
    let info: serde_json::Value = serde_json::from_str(&first.text("testinfo.json")).unwrap();
    assert_eq!(
        info["custom_environment"],
        serde_json::json!(["ADT_TEST_TRIGGERS=glibc/2.36-9"]),
        "{info}"
    );
    let summary = adt_runner::results::load(&svc.results("adt-loop-second")[0])
        .unwrap()
        .text("summary");
    assert!(
        summary.contains("command1             PASS"),
        "it ran to its end: {summary}"
    );

    let mail = svc.smtp.messages();
    let subjects: Vec<_> = mail
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        subjects,
        [
            "adt-loop-first 1.0: PASS (exit code 0)",
            "adt-loop-second 1.0: PASS (exit code 0)"
        ]
    );
    assert_eq!(mail[1]["to"], "adt-loop-second@loop.example.org");

    let notes = svc.notifications().join("|");
    assert!(notes.starts_with("READY=1"), "{notes}");
    assert!(
        notes.contains("STATUS=testing ") && notes.ends_with("STOPPING=1"),
        "{notes}"
    );

    // Next time, the third.
    let next = svc.command(&["next"]).output().unwrap();
    let next = String::from_utf8_lossy(&next.stdout);
    assert!(
        next.starts_with(&format!(
            "{}\nwhy: selector program",
            data("third").display()
        )),
        "{next}"
    );
    let once = svc.command(&["loop", "--once"]).output().unwrap();
    assert_eq!(
        once.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    assert_eq!(svc.results("adt-loop-third").len(), 1);
    let hist = svc
        .command(&["history", "adt-loop-third"])
        .output()
        .unwrap();
    let hist = String::from_utf8_lossy(&hist.stdout);
    assert!(
        hist.contains("ALWAYSFAIL") && hist.contains("FAIL non-zero exit status 3"),
        "{hist}"
    );
    let index = std::fs::read_to_string(svc.path("web/index.html")).unwrap();
    for p in ["adt-loop-first", "adt-loop-second", "adt-loop-third"] {
        assert!(
            index.contains(&format!("packages/{p}.html")),
            "{p} on the web index"
        );
    }
    // The whole report again, elsewhere, from the command line.
    let out2 = svc.path("web2").display().to_string();
    let web = svc.command(&["web", "--out", &out2]).output().unwrap();
    let said = String::from_utf8_lossy(&web.stdout);
    assert!(
        said.starts_with("5 pages written"),
        "{said} {}",
        String::from_utf8_lossy(&web.stderr)
    );
    let page = std::fs::read_to_string(svc.path("web2/packages/adt-loop-third.html")).unwrap();
    assert!(
        page.contains("badge ALWAYSFAIL") && page.contains("log.gz"),
        "{page}"
    );
}

#[test]
fn a_second_signal_aborts_the_test_and_tears_the_testbed_down() {
    let tb = match Testbed::start() {
        Ok(t) => t,
        Err(why) => return adt_systest::skip(&why),
    };
    let svc = Service::new(
        &tb,
        &[queue_line("second", r#"{"env": ["LOOP_SLEEP=600"]}"#)],
    );
    let mut lp = svc.start("loop.log");
    wait_for("the test to start", 120, || {
        svc.running_log_has("LOOP-SECOND-STARTED")
    });
    wait_for("the test's sleep in the testbed", 30, || {
        !tb.processes("sleep").is_empty()
    });
    signal(&lp, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    signal(&lp, Signal::SIGINT);
    let code = wait_exit(&mut lp, 60);
    let log = std::fs::read_to_string(svc.path("loop.log")).unwrap();
    assert_eq!(code, 128 + 2, "exit 128+SIGINT: {log}");
    assert!(log.contains("tearing the testbed down"), "{log}");
    assert!(
        tb.processes("sleep").is_empty(),
        "the test's processes are gone"
    );
    assert!(
        svc.results("adt-loop-second").is_empty(),
        "an aborted run stores nothing"
    );
    let work: Vec<_> = std::fs::read_dir(svc.path("results/.work"))
        .unwrap()
        .collect();
    assert!(work.is_empty(), "no work directory left: {work:?}");
    assert!(svc.smtp.messages().is_empty(), "nothing to report");
    // The testbed works again after the teardown: the package is retried
    // (with a short sleep this time) and passes.
    let line = queue_line("second", r#"{"env": ["LOOP_SLEEP=1"]}"#);
    std::fs::write(svc.path("queue"), line + "\n").unwrap();
    let once = svc.command(&["loop", "--once"]).output().unwrap();
    let err = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(0), "{err}");
    assert!(err.contains("adt-loop-second 1.0: PASS"), "{err}");
}

#[test]
fn sighup_reloads_the_configuration_and_keeps_it_when_the_new_one_is_bad() {
    let tb = match Testbed::start() {
        Ok(t) => t,
        Err(why) => return adt_systest::skip(&why),
    };
    let svc = Service::new(&tb, &[queue_line("first", "")]);
    svc.configure(&tb, "true", "");
    let mut lp = svc.start("loop.log");
    wait_for("idling", 30, || {
        std::fs::read_to_string(svc.path("loop.log")).is_ok()
            && svc.notifications().iter().any(|n| n.contains("idle"))
    });
    svc.configure(
        &tb,
        &format!(
            "{} {}",
            data("queue-selector").display(),
            svc.path("queue").display()
        ),
        "",
    );
    signal(&lp, Signal::SIGHUP);
    wait_for("the reloaded selector's pick to be stored", 120, || {
        !svc.results("adt-loop-first").is_empty()
    });

    svc.configure(&tb, "true", "no-such-key = 1\n");
    signal(&lp, Signal::SIGHUP);
    wait_for("the bad configuration to be refused", 30, || {
        std::fs::read_to_string(svc.path("loop.log"))
            .unwrap()
            .contains("configuration not reloaded")
    });
    signal(&lp, Signal::SIGTERM);
    let code = wait_exit(&mut lp, 60);
    let log = std::fs::read_to_string(svc.path("loop.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("configuration reloaded"), "{log}");
    assert!(
        log.contains("no-such-key"),
        "the refusal names the key: {log}"
    );
}

#[test]
fn sighup_during_a_run_takes_effect_after_that_package() {
    let tb = match Testbed::start() {
        Ok(t) => t,
        Err(why) => return adt_systest::skip(&why),
    };
    let svc = Service::new(
        &tb,
        &[
            queue_line("second", r#"{"env": ["LOOP_SLEEP=6"]}"#),
            queue_line("third", ""),
        ],
    );
    let selector = format!(
        "{} {}",
        data("queue-selector").display(),
        svc.path("queue").display()
    );
    let mut lp = svc.start("loop.log");
    wait_logged(&svc, "loop.log", "the second test to start", 120, || {
        svc.running_log_has("LOOP-SECOND-STARTED")
    });
    // Mail goes elsewhere from now on, but only after this package.
    svc.configure_mail_to(&tb, &selector, "reloaded.example.org", "");
    signal(&lp, Signal::SIGHUP);
    wait_logged(&svc, "loop.log", "the third to be stored", 180, || {
        !svc.results("adt-loop-third").is_empty()
    });
    signal(&lp, Signal::SIGTERM);
    let code = wait_exit(&mut lp, 120);
    let log = std::fs::read_to_string(svc.path("loop.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    let to: Vec<String> = svc
        .smtp
        .messages()
        .iter()
        .map(|m| m["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        to,
        [
            "adt-loop-second@loop.example.org",
            "adt-loop-third@reloaded.example.org"
        ],
        "the package running at SIGHUP ends under the old configuration: {log}"
    );
    let stored = log.find("adt-loop-second 1.0: PASS").expect(&log);
    let reloaded = log.find("configuration reloaded").expect(&log);
    assert!(stored < reloaded, "reloaded after the package: {log}");
}

#[test]
fn the_loop_goes_on_when_an_upgrade_replaces_its_binary() {
    let tb = match Testbed::start() {
        Ok(t) => t,
        Err(why) => return adt_systest::skip(&why),
    };
    let svc = Service::new(
        &tb,
        &[
            queue_line("second", r#"{"env": ["LOOP_SLEEP=6"]}"#),
            queue_line("third", ""),
        ],
    );
    // The loop runs from a copy, which is then replaced the way dpkg
    // installs a new version: the new file renamed over the old.
    let bin = svc.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("adt-runner");
    std::fs::copy(EXE, &exe).unwrap();
    let mut lp = svc.start_from(&exe, "loop.log");
    wait_logged(&svc, "loop.log", "the second test to start", 120, || {
        svc.running_log_has("LOOP-SECOND-STARTED")
    });
    std::fs::copy(EXE, bin.join("adt-runner.dpkg-new")).unwrap();
    std::fs::rename(bin.join("adt-runner.dpkg-new"), &exe).unwrap();
    wait_logged(&svc, "loop.log", "the third to be stored", 180, || {
        !svc.results("adt-loop-third").is_empty()
    });
    signal(&lp, Signal::SIGTERM);
    let code = wait_exit(&mut lp, 120);
    let log = std::fs::read_to_string(svc.path("loop.log")).unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("cannot start"), "{log}");
    assert_eq!(svc.results("adt-loop-second").len(), 1, "{log}");
}
