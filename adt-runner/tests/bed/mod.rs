//! The sshd testbed of tests/testbed/ (start, revert, stop) for the system
//! tests of adt-runner, and running the adt-runner binary on fixtures.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Serialises the heavy tests: the machines have two cores.
pub static HEAVY: Mutex<()> = Mutex::new(());

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures").join(name)
}

/// Why the sshd testbed cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("needs root (the sshd testbed uses mount and PID namespaces)".into());
    }
    for tool in ["debootstrap", "unshare", "nsenter", "ssh-keygen"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{tool} is not installed (tests/run-suite installs it)"
            ));
        }
    }
    None
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A running sshd testbed, stopped on drop.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub env: HashMap<String, String>,
}

impl Bed {
    pub fn start() -> Bed {
        let dir = tempfile::Builder::new()
            .prefix("adt-runner-bed.")
            .tempdir()
            .unwrap();
        let st = Command::new(workspace().join("tests/testbed/start"))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "tests/testbed/start failed: {st}");
        let text = std::fs::read_to_string(dir.path().join("env")).unwrap();
        let env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Bed { dir, env }
    }

    pub fn spec(&self) -> String {
        format!(
            "ssh:{}@{}:{}",
            self.env["USER"], self.env["HOST"], self.env["PORT"]
        )
    }

    pub fn key(&self) -> &str {
        &self.env["KEY"]
    }

    pub fn revert_command(&self) -> String {
        format!(
            "{} {}",
            workspace().join("tests/testbed/revert").display(),
            self.dir.path().display()
        )
    }

    pub fn revert(&self) {
        let st = Command::new("sh")
            .args(["-c", &self.revert_command()])
            .status()
            .unwrap();
        assert!(st.success(), "revert failed");
    }

    /// How many processes in the testbed have a command line (arguments
    /// joined by spaces) matching the extended regular expression `ere`.
    pub fn processes_matching(&self, ere: &str) -> usize {
        let ssh = adt_runner::ssh::Ssh::connect(&self.target(), std::time::Duration::from_secs(30))
            .expect("login to the testbed");
        let o = ssh
            .output(&format!(
                "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -cE {} || true",
                adt_runner::ssh::quote(ere)
            ))
            .unwrap();
        let n = String::from_utf8_lossy(&o.stdout);
        n.trim()
            .parse()
            .unwrap_or_else(|_| panic!("counting processes: {n:?}"))
    }

    pub fn target(&self) -> adt_runner::ssh::Target {
        adt_runner::ssh::Target {
            host: self.env["HOST"].clone(),
            port: self.env["PORT"].parse().unwrap(),
            user: self.env["USER"].clone(),
            identity: Some(PathBuf::from(self.key())),
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("tests/testbed/stop"))
            .arg(self.dir.path())
            .status();
    }
}

/// The result of one `adt-runner run`.
pub struct Ran {
    pub code: i32,
    pub out: tempfile::TempDir,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.path().join("out").join(name)).unwrap_or_default()
    }

    pub fn summary(&self) -> String {
        self.file("summary")
    }

    /// The verdict of `test` in the summary, e.g. "PASS" or "FAIL stderr: x".
    pub fn verdict(&self, test: &str) -> Option<String> {
        self.summary().lines().find_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            (name == test).then(|| rest.trim_start().to_string())
        })
    }
}

/// Runs `adt-runner run SRC --testbed ... -o OUT EXTRA...` (with the
/// fixture's runner-args) on a reverted testbed.
pub fn run(bed: &Bed, src: &Path, extra: &[&str]) -> Ran {
    run_with(bed, src, extra, true)
}

/// As `run`, but adt-runner is not given the revert command: a testbed
/// that cannot revert (it still starts from the pristine root).
#[allow(dead_code)]
pub fn run_without_revert(bed: &Bed, src: &Path, extra: &[&str]) -> Ran {
    run_with(bed, src, extra, false)
}

fn run_with(bed: &Bed, src: &Path, extra: &[&str], can_revert: bool) -> Ran {
    bed.revert();
    let out = tempfile::Builder::new()
        .prefix("adt-runner-out.")
        .tempdir()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adt-runner"));
    cmd.arg("run")
        .arg(src)
        .args(["--testbed", &bed.spec(), "--identity", bed.key()]);
    if can_revert {
        cmd.args(["--revert-command", &bed.revert_command()]);
    }
    cmd.arg("-o").arg(out.path().join("out"));
    if let Ok(args) = std::fs::read_to_string(src.join("runner-args")) {
        cmd.args(args.split_whitespace());
    }
    cmd.args(extra);
    let o = cmd.output().unwrap();
    Ran {
        code: o.status.code().unwrap_or(-1),
        out,
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
