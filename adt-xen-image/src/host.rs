//! The host: running external commands (LVM, dmsetup, xl, mount, ssh, ...)
//! behind one small trait, so the steps can be driven by the real tools,
//! by a dry run that prints what it would change, or, in unit tests, by an
//! in-memory fake.
//!
//! Commands are named by tool (`argv[0]` = "lvs"); the real host resolves
//! the name from the spec's [tools] or PATH. A `query` changes nothing and
//! runs even in a dry run; `run` changes the host. Not for: deciding what
//! to run (the step modules) or touching files (see `files`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Every tool the tool runs on the host, by the name a spec's [tools] uses.
pub const KNOWN_TOOLS: &[&str] = &[
    "xl",
    "dmsetup",
    "lvs",
    "vgs",
    "lvcreate",
    "pvcreate",
    "vgcreate",
    "blockdev",
    "e2image",
    "dumpe2fs",
    "debootstrap",
    "mkfs.ext4",
    "mount",
    "umount",
    "chroot",
    "ssh",
    "ip",
    "dd",
    "sync",
    "udevadm",
];

/// How long a command may take before it is killed.
pub mod timeout {
    use std::time::Duration;
    /// Queries and quick changes (lvs, dmsetup, mount, ...).
    pub const QUICK: Duration = Duration::from_secs(120);
    /// `xl create`, `xl destroy`: domain building under emulation is slow.
    pub const DOMAIN: Duration = Duration::from_secs(300);
    /// `xl save` of a whole domain's memory.
    pub const SAVE: Duration = Duration::from_secs(1800);
    /// Filling the origin (`e2image`, `debootstrap`) and `apt-get update`.
    pub const FILL: Duration = Duration::from_secs(3600);
    /// One `ssh ... true` attempt.
    pub const SSH: Duration = Duration::from_secs(30);
}

/// What a finished command said.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(stdout: &str) -> Output {
        Output {
            ok: true,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[cfg(test)]
    pub fn failure(stderr: &str) -> Output {
        Output {
            ok: false,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    /// The last lines of stderr (or stdout), for an error message.
    pub fn reason(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        if text.is_empty() {
            return "failed with no output".into();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

pub trait Host {
    /// Run a command that changes nothing; it runs even in a dry run.
    /// `Err` only when it cannot run or times out; a failure is in `Output`.
    fn query(&self, argv: &[&str], timeout: Duration) -> Result<Output>;
    /// Run a command that changes the host (a dry run prints it instead).
    fn run(&self, argv: &[&str], timeout: Duration) -> Result<Output>;
    /// Whether a TCP connection to `address:port` opens within `timeout`.
    fn tcp_open(&self, address: &str, port: u16, timeout: Duration) -> bool;
    /// The absolute path `tool` resolves to, if it exists.
    fn which(&self, tool: &str) -> Option<PathBuf>;
    /// Whether changes are only printed (files too: see `files`).
    fn dry_run(&self) -> bool {
        false
    }
}

/// The effective uid of this process (from /proc/self/status).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The command line as a human (or a shell) would type it.
pub fn show(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
            if plain {
                (*a).to_owned()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run and require success: the error carries the command and its stderr.
pub fn run_ok(host: &dyn Host, argv: &[&str], timeout: Duration) -> Result<String> {
    require_ok(argv, host.run(argv, timeout)?)
}

/// Query and require success.
pub fn query_ok(host: &dyn Host, argv: &[&str], timeout: Duration) -> Result<String> {
    require_ok(argv, host.query(argv, timeout)?)
}

fn require_ok(argv: &[&str], out: Output) -> Result<String> {
    if out.ok {
        Ok(out.stdout)
    } else {
        Err(Error::Command {
            command: show(argv),
            reason: out.reason(),
        })
    }
}

/// Where tools are found: the spec's [tools], then PATH, then the sbin and
/// bin directories (sudo and cron do not always have them on PATH).
#[derive(Debug, Clone, Default)]
pub struct Toolbox {
    paths: BTreeMap<String, PathBuf>,
}

impl Toolbox {
    pub fn new(overrides: &BTreeMap<String, PathBuf>) -> Toolbox {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
        dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from));
        let mut paths = BTreeMap::new();
        for tool in KNOWN_TOOLS {
            let found = match overrides.get(*tool) {
                Some(p) => Some(p.clone()).filter(|p| is_executable(p)),
                None => dirs
                    .iter()
                    .filter(|d| d.is_absolute())
                    .map(|d| d.join(tool))
                    .find(|p| is_executable(p)),
            };
            if let Some(p) = found {
                paths.insert((*tool).to_owned(), p);
            }
        }
        Toolbox { paths }
    }

    pub fn get(&self, tool: &str) -> Option<&Path> {
        self.paths.get(tool).map(PathBuf::as_path)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The real host: runs the tools, each with a timeout.
pub struct RealHost {
    pub tools: Toolbox,
}

impl RealHost {
    fn execute(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let (name, args) = argv.split_first().ok_or_else(|| Error::Command {
            command: String::new(),
            reason: "empty command".into(),
        })?;
        let program = self.tools.get(name).ok_or_else(|| Error::ToolMissing {
            tool: (*name).to_owned(),
        })?;
        spawn_with_timeout(program, args, timeout, &show(argv))
    }
}

/// Run `program args` with stdin closed and the output captured; kill it
/// at `timeout`. The environment is the caller's with a fixed PATH (also
/// what a chroot's commands see) and the C locale (parsed output).
pub fn spawn_with_timeout(
    program: &Path,
    args: &[&str],
    timeout: Duration,
    shown: &str,
) -> Result<Output> {
    let failed = |reason: String| Error::Command {
        command: shown.to_owned(),
        reason,
    };
    let mut child = Command::new(program)
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run: {e}")))?;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "timed out after {} s (killed)",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(failed(e.to_string())),
        }
    };
    Ok(Output {
        ok: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Drain a pipe on a thread of its own, so a chatty stderr cannot block
/// the child while stdout is read.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Host for RealHost {
    fn query(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        self.execute(argv, timeout)
    }

    fn run(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        println!("adt-xen-image: + {}", show(argv));
        self.execute(argv, timeout)
    }

    fn tcp_open(&self, address: &str, port: u16, timeout: Duration) -> bool {
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            return false;
        };
        std::net::TcpStream::connect_timeout(&(ip, port).into(), timeout).is_ok()
    }

    fn which(&self, tool: &str) -> Option<PathBuf> {
        self.tools.get(tool).map(Path::to_owned)
    }
}

/// A dry run: queries run for real, changes are printed and succeed.
pub struct DryRun {
    pub real: RealHost,
}

impl Host for DryRun {
    fn query(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        self.real.query(argv, timeout)
    }

    fn run(&self, argv: &[&str], _timeout: Duration) -> Result<Output> {
        println!("adt-xen-image: would run: {}", show(argv));
        Ok(Output::success(""))
    }

    fn tcp_open(&self, _address: &str, _port: u16, _timeout: Duration) -> bool {
        true
    }

    fn which(&self, tool: &str) -> Option<PathBuf> {
        self.real.which(tool)
    }

    fn dry_run(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_hangs_is_killed_at_the_timeout() {
        let e = spawn_with_timeout(
            Path::new("/bin/sleep"),
            &["10"],
            Duration::from_millis(200),
            "sleep 10",
        )
        .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let out = spawn_with_timeout(
            Path::new("/bin/sh"),
            &["-c", "echo out; echo device busy >&2; exit 1"],
            Duration::from_secs(5),
            "sh",
        )
        .unwrap();
        assert!(!out.ok);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.reason(), "device busy");
    }

    #[test]
    fn commands_are_shown_shell_quoted() {
        assert_eq!(
            show(&[
                "dmsetup",
                "create",
                "adt-x-0",
                "--table",
                "0 8 snapshot a b n 8"
            ]),
            "dmsetup create adt-x-0 --table '0 8 snapshot a b n 8'"
        );
        assert_eq!(show(&["echo", "it's"]), "echo 'it'\\''s'");
    }

    #[test]
    fn an_unknown_tool_is_named() {
        let host = RealHost {
            tools: Toolbox::default(),
        };
        let e = host.query(&["xl", "info"], timeout::QUICK).unwrap_err();
        assert!(
            e.to_string().starts_with("xl not found (not on PATH"),
            "{e}"
        );
    }
}
