//! The sshd testbed from Rust: a debootstrapped Debian 12 root (cached),
//! an overlay over it and sshd chrooted in it on a loopback port, in its own
//! mount, PID and UTS namespaces. This module drives the shell scripts in
//! tests/testbed/ (start, revert, stop), which also work by hand.
//!
//! Not for: the Xen testbed (tests/xenlab/) or talking ssh itself; tests
//! log in with the `ssh` command (`SshTestbed::ssh`) or hand the address to
//! adt-runner (`SshTestbed::spec`) or to autopkgtest (`setup_script`).
//!
//! Needs root (namespaces, overlayfs, chroot). The first start on a machine
//! builds the root with debootstrap (about a minute); later starts reuse it
//! from `$ADT_TESTBED_CACHE` (default /var/cache/autopkgtest-xen-testbed).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running testbed. Dropping it stops it (kills its processes, unmounts).
pub struct SshTestbed {
    /// Address sshd listens on (always 127.0.0.1).
    pub host: String,
    /// sshd's port; a revert keeps it.
    pub port: u16,
    /// The user that logs in (root).
    pub user: String,
    /// Private key authorised for `user`.
    pub key_path: PathBuf,
    /// known_hosts line for `[host]:port`, for strict host key checking.
    pub known_hosts: PathBuf,
    /// Host pid of the testbed's PID-namespace init: killing it ends the testbed.
    pub init_pid: i32,
    /// The cached pristine root the overlay sits on.
    pub root: PathBuf,
    dir: tempfile::TempDir,
    running: bool,
}

/// What went wrong with a testbed script, with its output.
#[derive(Debug)]
pub struct TestbedError(String);

impl fmt::Display for TestbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestbedError {}

/// tests/testbed/: the scripts behind this module.
pub fn scripts_dir() -> PathBuf {
    crate::project_root().join("tests").join("testbed")
}

/// The autopkgtest-virt-ssh setup script: `autopkgtest PKG -- ssh -s
/// SCRIPT -- DIR` gives autopkgtest this testbed with its revert.
pub fn setup_script() -> PathBuf {
    scripts_dir().join("ssh-setup")
}

fn run_script(name: &str, dir: &Path) -> Result<Output, TestbedError> {
    let script = scripts_dir().join(name);
    let out = Command::new(&script)
        .arg(dir)
        .output()
        .map_err(|e| TestbedError(format!("cannot run {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(TestbedError(format!(
            "{} {} failed ({}): {}",
            script.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

impl SshTestbed {
    /// Start a testbed in a new temporary directory and wait until root
    /// can log in.
    pub fn start() -> Result<SshTestbed, TestbedError> {
        let dir = tempfile::Builder::new()
            .prefix("adt-testbed.")
            .tempdir()
            .map_err(|e| TestbedError(format!("cannot make a testbed directory: {e}")))?;
        run_script("start", dir.path())?;
        let mut testbed = SshTestbed {
            host: String::new(),
            port: 0,
            user: String::new(),
            key_path: PathBuf::new(),
            known_hosts: PathBuf::new(),
            init_pid: 0,
            root: PathBuf::new(),
            dir,
            running: true,
        };
        testbed.load_env()?;
        Ok(testbed)
    }

    /// The testbed's directory (env file, keys, overlay layers).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ssh:USER@HOST:PORT`, the form adt-runner's `--testbed` takes.
    pub fn spec(&self) -> String {
        format!("ssh:{}@{}:{}", self.user, self.host, self.port)
    }

    /// An `ssh` command that runs `remote` in the testbed as `user`, with
    /// strict host key checking against the testbed's known_hosts.
    pub fn ssh(&self, remote: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-q",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.key_path)
        .arg("-p")
        .arg(self.port.to_string())
        .arg("-l")
        .arg(&self.user)
        .arg(&self.host)
        .arg("--")
        .arg(remote);
        cmd
    }

    /// Reset the testbed to the pristine root; sshd comes back on the same
    /// port with the same key (existing ssh sessions are cut).
    pub fn revert(&mut self) -> Result<(), TestbedError> {
        run_script("revert", self.dir.path())?;
        let port = self.port;
        self.load_env()?;
        if self.port != port {
            return Err(TestbedError(format!(
                "revert moved sshd from port {port} to {}",
                self.port
            )));
        }
        Ok(())
    }

    /// Stop the testbed now and report failure (Drop does the same silently).
    pub fn stop(mut self) -> Result<(), TestbedError> {
        self.running = false;
        run_script("stop", self.dir.path()).map(|_| ())
    }

    fn load_env(&mut self) -> Result<(), TestbedError> {
        let path = self.dir.path().join("env");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| TestbedError(format!("cannot read {}: {e}", path.display())))?;
        let bad = |line: &str| TestbedError(format!("{}: bad line {line:?}", path.display()));
        for line in text.lines() {
            let (key, value) = line.split_once('=').ok_or_else(|| bad(line))?;
            match key {
                "HOST" => self.host = value.to_owned(),
                "PORT" => self.port = value.parse().map_err(|_| bad(line))?,
                "USER" => self.user = value.to_owned(),
                "KEY" => self.key_path = value.into(),
                "KNOWN_HOSTS" => self.known_hosts = value.into(),
                "PID" => self.init_pid = value.parse().map_err(|_| bad(line))?,
                "ROOT" => self.root = value.into(),
                _ => {}
            }
        }
        if self.port == 0 || self.init_pid == 0 || self.host.is_empty() {
            return Err(TestbedError(format!(
                "{} lacks HOST, PORT or PID",
                path.display()
            )));
        }
        Ok(())
    }
}

impl Drop for SshTestbed {
    fn drop(&mut self) {
        if self.running {
            if let Err(e) = run_script("stop", self.dir.path()) {
                eprintln!("stopping the sshd testbed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn ssh_stdout(testbed: &SshTestbed, remote: &str) -> String {
        let out = testbed.ssh(remote).output().expect("run ssh");
        assert!(
            out.status.success(),
            "ssh {remote:?} into {} failed ({}): {}",
            testbed.spec(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 from ssh")
    }

    /// Every host pid whose mount table mentions `dir`: what a leaked
    /// testbed would leave behind.
    fn processes_seeing_mounts_under(dir: &Path) -> Vec<String> {
        let needle = dir.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(mounts) = std::fs::read_to_string(entry.path().join("mountinfo")) {
                if mounts.contains(&needle) {
                    found.push(name);
                }
            }
        }
        found
    }

    #[test]
    fn testbed_starts_logs_in_reverts_and_stops_without_leaks() {
        if !nix::unistd::Uid::effective().is_root() {
            crate::skip("the sshd testbed needs root (namespaces, overlayfs, chroot)");
            return;
        }
        let mut testbed = SshTestbed::start().expect("start the testbed");
        assert_eq!(testbed.host, "127.0.0.1");
        assert_eq!(testbed.user, "root");

        let who = ssh_stdout(
            &testbed,
            "id -u; cat /etc/debian_version; echo written-before-revert > /root/revert-probe",
        );
        let mut lines = who.lines();
        assert_eq!(lines.next(), Some("0"), "login is not root: {who}");
        let version = lines.next().unwrap_or_default();
        assert!(version.starts_with("12."), "not Debian 12: {version:?}");
        // Its own host name, which resolves (sudo warns on stderr otherwise).
        let name = ssh_stdout(
            &testbed,
            "hostname; getent hosts \"$(hostname)\" >/dev/null && echo resolves",
        );
        assert_eq!(name, "adt-testbed\nresolves\n", "host name of the testbed");
        assert_eq!(
            ssh_stdout(&testbed, "cat /root/revert-probe").trim(),
            "written-before-revert"
        );
        // The overlay keeps the cached root pristine while the testbed writes.
        assert!(!testbed.root.join("root/revert-probe").exists());

        let port = testbed.port;
        testbed.revert().expect("revert the testbed");
        assert_eq!(testbed.port, port, "revert must keep the port");
        let probe = ssh_stdout(
            &testbed,
            "test -e /root/revert-probe && echo present || echo gone",
        );
        assert_eq!(
            probe.trim(),
            "gone",
            "a file written before the revert survived it"
        );

        let dir = testbed.dir().to_owned();
        let init = testbed.init_pid;
        assert!(
            !processes_seeing_mounts_under(&dir).is_empty(),
            "the overlay is not mounted"
        );
        testbed.stop().expect("stop the testbed");
        assert!(
            !Path::new(&format!("/proc/{init}")).exists(),
            "testbed init {init} still runs after stop"
        );
        assert_eq!(
            processes_seeing_mounts_under(&dir),
            Vec::<String>::new(),
            "processes still see the testbed's mounts after stop"
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on the testbed's port {port} after stop"
        );
    }
}
