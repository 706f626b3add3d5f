//! ssh to a testbed: one authenticated libssh2 session, commands with
//! separate live stdout and stderr, exit status, remote timeouts that kill
//! the command's process group, and copies of files and trees both ways.
//!
//! Not for: what runs in the testbed (which user, which environment): that
//! is `testbed` and `run`. Everything here is driven by one thread in
//! non-blocking mode, so a chatty stderr cannot stall stdout.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use ssh2::{BlockDirections, Channel, ErrorCode, Session};

/// Seconds `timeout -k` waits after SIGTERM before SIGKILL.
const KILL_AFTER: u64 = 10;

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: Option<PathBuf>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Something went wrong talking to the testbed (not: the command failed).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    #[error("ssh login as {target} failed: {reason} (is the key authorised there?)")]
    Auth { target: String, reason: String },
    #[error("ssh session to {target} failed: {reason}")]
    Session { target: String, reason: String },
    #[error("local {what} failed: {reason}")]
    Local { what: String, reason: String },
    #[error("Received signal {0}, cleaning up...")]
    Interrupted(i32),
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit status; 128+N when the command died of signal N.
    pub code: i32,
    /// The command ran into its timeout and was killed.
    pub timed_out: bool,
}

/// A command's captured output.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Quotes `s` for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@+,%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Wraps `cmd` so that after `secs` its whole process group gets SIGTERM,
/// then SIGKILL.
pub fn with_timeout(cmd: &str, secs: u64) -> String {
    format!("timeout -k {KILL_AFTER} {secs} sh -c {}", quote(cmd))
}

fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(-37)
}

/// One session to one testbed.
pub struct Ssh {
    session: Session,
    _tcp: TcpStream,
    target: Target,
}

impl Ssh {
    /// Connects and logs in, retrying for up to `wait` while the testbed
    /// boots.
    pub fn connect(target: &Target, wait: Duration) -> Result<Ssh, SshError> {
        let deadline = Instant::now() + wait;
        loop {
            match Self::try_connect(target) {
                Ok(s) => return Ok(s),
                Err(e @ SshError::Auth { .. }) => return Err(e),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "ssh not ready, retrying");
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
    }

    fn try_connect(target: &Target) -> Result<Ssh, SshError> {
        let conn_err = |reason: String| SshError::Connect {
            target: target.to_string(),
            reason,
        };
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| conn_err(e.to_string()))?
            .next()
            .ok_or_else(|| conn_err("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| conn_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut session = Session::new().map_err(|e| conn_err(e.to_string()))?;
        session.set_tcp_stream(tcp.try_clone().map_err(|e| conn_err(e.to_string()))?);
        session.set_timeout(30_000);
        session.handshake().map_err(|e| conn_err(e.to_string()))?;
        Self::authenticate(&session, target)?;
        session.set_keepalive(true, 30);
        session.set_timeout(0);
        session.set_blocking(false);
        Ok(Ssh {
            session,
            _tcp: tcp,
            target: target.clone(),
        })
    }

    fn authenticate(session: &Session, target: &Target) -> Result<(), SshError> {
        let auth_err = |reason: String| SshError::Auth {
            target: target.to_string(),
            reason,
        };
        match &target.identity {
            Some(key) => session
                .userauth_pubkey_file(&target.user, None, key, None)
                .map_err(|e| auth_err(format!("key {}: {e}", key.display())))?,
            None => session
                .userauth_agent(&target.user)
                .map_err(|e| auth_err(format!("ssh agent: {e}")))?,
        }
        if session.authenticated() {
            Ok(())
        } else {
            Err(auth_err("not authenticated".into()))
        }
    }

    /// The login target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn session_err(&self, reason: impl std::fmt::Display) -> SshError {
        SshError::Session {
            target: self.target.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Waits until the socket is ready in the direction libssh2 wants.
    fn wait_socket(&self, max: Duration) {
        let dirs = self.session.block_directions();
        let mut flags = PollFlags::empty();
        if matches!(dirs, BlockDirections::Inbound | BlockDirections::Both) {
            flags |= PollFlags::POLLIN;
        }
        if matches!(dirs, BlockDirections::Outbound | BlockDirections::Both) {
            flags |= PollFlags::POLLOUT;
        }
        if flags.is_empty() {
            flags = PollFlags::POLLIN;
        }
        let ms = max.as_millis().min(u16::MAX as u128) as u16;
        let mut fds = [PollFd::new(self._tcp.as_fd(), flags)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }

    /// Retries a libssh2 call while it would block.
    fn retry<T>(&self, mut f: impl FnMut() -> Result<T, ssh2::Error>) -> Result<T, SshError> {
        loop {
            match f() {
                Ok(v) => return Ok(v),
                Err(e) if would_block(&e) => self.wait_socket(Duration::from_millis(100)),
                Err(e) => return Err(self.session_err(e)),
            }
        }
    }

    fn open(&self, cmd: &str) -> Result<Channel, SshError> {
        let mut ch = self.retry(|| self.session.channel_session())?;
        self.retry(|| ch.exec(cmd))?;
        Ok(ch)
    }

    /// Runs `cmd` (a shell command line) with `stdin` fed to it and its
    /// output streamed live to `out` and `err`. With `timeout`, the command
    /// is wrapped in `timeout -k` and given up locally a little later.
    pub fn run(
        &self,
        cmd: &str,
        stdin: Option<&mut dyn Read>,
        out: &mut dyn Write,
        err: &mut dyn Write,
        timeout: Option<u64>,
    ) -> Result<Exit, SshError> {
        let wrapped = match timeout {
            Some(secs) => with_timeout(cmd, secs),
            None => cmd.to_string(),
        };
        tracing::debug!(command = %wrapped, "remote command");
        let started = Instant::now();
        let deadline = timeout.map(|s| started + Duration::from_secs(s + KILL_AFTER + 20));
        let mut ch = self.open(&wrapped)?;
        let finished = Pump::new(stdin).run(self, &mut ch, out, err, deadline)?;
        if !finished {
            let _ = ch.close();
            return Ok(Exit {
                code: 124,
                timed_out: true,
            });
        }
        self.retry(|| ch.close())?;
        self.retry(|| ch.wait_close())?;
        let mut code = self.retry(|| ch.exit_status())?;
        if let Ok(Some(sig)) = ch.exit_signal().map(|s| s.exit_signal) {
            code = 128 + signal_number(&sig);
        }
        let timed_out = timeout.is_some_and(|s| {
            matches!(code, 124 | 137) && started.elapsed() >= Duration::from_secs(s)
        });
        Ok(Exit { code, timed_out })
    }

    /// Runs `cmd` and captures its output.
    pub fn output(&self, cmd: &str) -> Result<Output, SshError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let exit = self.run(cmd, None, &mut stdout, &mut stderr, None)?;
        Ok(Output {
            exit,
            stdout,
            stderr,
        })
    }

    /// Writes `data` to the remote file `dest`.
    pub fn write_file(&self, dest: &str, data: &[u8]) -> Result<(), SshError> {
        let cmd = format!("cat > {}", quote(dest));
        self.checked(&cmd, Some(&mut &data[..]), &mut io::sink(), None)
    }

    /// Runs `cmd`; a non-zero exit or the `timeout` is an error.
    fn checked(
        &self,
        cmd: &str,
        stdin: Option<&mut dyn Read>,
        out: &mut dyn Write,
        timeout: Option<u64>,
    ) -> Result<(), SshError> {
        let mut err = Vec::new();
        let exit = self.run(cmd, stdin, out, &mut err, timeout)?;
        if exit.timed_out || (exit.code == 124 && timeout.is_some()) {
            return Err(self.session_err(format!(
                "`{cmd}` timed out after {} s",
                timeout.unwrap_or_default()
            )));
        }
        if exit.code != 0 {
            let msg = String::from_utf8_lossy(&err);
            return Err(self.session_err(format!(
                "`{cmd}` failed with status {}: {}",
                exit.code,
                msg.trim()
            )));
        }
        Ok(())
    }

    /// Copies the local file or directory `src` to `dest` in the testbed
    /// (a directory's contents go into `dest`, created if needed); given
    /// up, as a session error, after `timeout` seconds.
    pub fn copy_down(&self, src: &Path, dest: &str, timeout: Option<u64>) -> Result<(), SshError> {
        if !src.is_dir() {
            let mut f = std::fs::File::open(src)
                .map_err(|e| local_err(&format!("reading {}", src.display()), e))?;
            let cmd = format!("cat > {}", quote(dest));
            return self.checked(&cmd, Some(&mut f), &mut io::sink(), timeout);
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(src)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| local_err("tar", e))?;
        let mut pipe = tar.stdout.take().expect("piped stdout");
        let cmd = format!(
            "mkdir -p {0} && tar --no-same-owner -C {0} -xf -",
            quote(dest)
        );
        let r = self.checked(&cmd, Some(&mut pipe), &mut io::sink(), timeout);
        // Closed before the wait: a tar still writing gets EPIPE, not a hang.
        drop(pipe);
        if r.is_err() {
            let _ = tar.kill();
        }
        let status = tar.wait().map_err(|e| local_err("tar", e))?;
        r?;
        if !status.success() {
            return Err(local_err(
                "tar",
                io::Error::other(format!("{status} packing {}", src.display())),
            ));
        }
        Ok(())
    }

    /// Copies the testbed's file or directory `src` to the local `dest`
    /// (a directory's contents go into `dest`, created if needed); given
    /// up, as a session error, after `timeout` seconds.
    pub fn copy_up(
        &self,
        src: &str,
        dest: &Path,
        is_dir: bool,
        timeout: Option<u64>,
    ) -> Result<(), SshError> {
        if !is_dir {
            let mut f = std::fs::File::create(dest)
                .map_err(|e| local_err(&format!("creating {}", dest.display()), e))?;
            return self.checked(&format!("cat {}", quote(src)), None, &mut f, timeout);
        }
        std::fs::create_dir_all(dest)
            .map_err(|e| local_err(&format!("creating {}", dest.display()), e))?;
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(dest)
            .args(["--no-same-owner", "-xf", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| local_err("tar", e))?;
        let mut pipe = tar.stdin.take().expect("piped stdin");
        let r = self.checked(
            &format!("tar -C {} -cf - .", quote(src)),
            None,
            &mut pipe,
            timeout,
        );
        drop(pipe);
        let status = tar.wait().map_err(|e| local_err("tar", e))?;
        r?;
        if !status.success() {
            return Err(local_err(
                "tar",
                io::Error::other(format!("{status} unpacking into {}", dest.display())),
            ));
        }
        Ok(())
    }
}

fn local_err(what: &str, e: io::Error) -> SshError {
    SshError::Local {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// The number of the signal an `exit-signal` message names: RFC 4254's
/// names without `SIG` (`TERM`, `USR1`, ...), or OpenSSH's `NAME@openssh.com`
/// for the others; this host's numbering (the testbed's architecture is
/// this host's). An unknown name counts as SIGTERM's 15.
fn signal_number(name: &str) -> i32 {
    let name = name.trim_end_matches("@openssh.com");
    let name = name.strip_prefix("SIG").unwrap_or(name);
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .unwrap_or(15)
}

/// Moves bytes between one channel and the local sinks and source.
struct Pump<'i> {
    stdin: Option<&'i mut dyn Read>,
    pending: Vec<u8>,
}

impl<'i> Pump<'i> {
    fn new(stdin: Option<&'i mut dyn Read>) -> Self {
        Pump {
            stdin,
            pending: Vec::new(),
        }
    }

    /// Pumps until the remote side closes its output (true) or `deadline`
    /// passes (false).
    fn run(
        mut self,
        ssh: &Ssh,
        ch: &mut Channel,
        out: &mut dyn Write,
        err: &mut dyn Write,
        deadline: Option<Instant>,
    ) -> Result<bool, SshError> {
        if self.stdin.is_none() {
            ssh.retry(|| ch.send_eof())?;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(sig) = crate::signal::pending() {
                return Err(SshError::Interrupted(sig));
            }
            let mut progress = self.feed(ssh, ch)?;
            let (n_out, eof_out) = read_some(ch.stream(0), &mut buf, out, ssh)?;
            let (n_err, eof_err) = read_some(ch.stderr(), &mut buf, err, ssh)?;
            progress |= n_out + n_err > 0;
            if ch.eof() && eof_out && eof_err {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            if !progress {
                ssh.wait_socket(Duration::from_millis(200));
            }
        }
    }

    /// Sends stdin; true if anything moved.
    fn feed(&mut self, ssh: &Ssh, ch: &mut Channel) -> Result<bool, SshError> {
        let Some(src) = self.stdin.as_mut() else {
            return Ok(false);
        };
        if self.pending.is_empty() {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = src
                .read(&mut chunk)
                .map_err(|e| local_err("reading input", e))?;
            if n == 0 {
                ssh.retry(|| ch.send_eof())?;
                self.stdin = None;
                return Ok(true);
            }
            chunk.truncate(n);
            self.pending = chunk;
        }
        match ch.write(&self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                Ok(n > 0)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(ssh.session_err(e)),
        }
    }
}

/// Reads what is available from one stream; (bytes moved, at end).
fn read_some(
    mut stream: impl Read,
    buf: &mut [u8],
    sink: &mut dyn Write,
    ssh: &Ssh,
) -> Result<(usize, bool), SshError> {
    let mut total = 0;
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok((total, true)),
            Ok(n) => {
                sink.write_all(&buf[..n])
                    .map_err(|e| local_err("writing output", e))?;
                let _ = sink.flush();
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total, false)),
            Err(e) => return Err(ssh.session_err(e)),
        }
    }
}

/// The version of the libssh2 linked in (the bundled one, >= 1.11).
pub fn libssh2_version() -> String {
    use libssh2_sys as _;
    extern "C" {
        fn libssh2_version(required: std::ffi::c_int) -> *const std::ffi::c_char;
    }
    // SAFETY: libssh2_version(0) returns a static NUL-terminated string.
    let p = unsafe { libssh2_version(0) };
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null, static, NUL-terminated (see above).
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        for s in [
            "plain",
            "",
            "a b",
            "it's",
            "$HOME `x` \"q\"",
            "new\nline",
            "*?[]",
        ] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn timeout_wrapper_kills_the_whole_process_group() {
        let cmd = with_timeout("sleep 30 & sleep 30; echo not reached", 1);
        let started = Instant::now();
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert_eq!(out.status.code(), Some(124));
        assert!(out.stdout.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn exit_signal_names_map_to_their_numbers() {
        for (name, n) in [
            ("TERM", 15),
            ("KILL", 9),
            ("USR1", 10),
            ("USR2", 12),
            ("SEGV", 11),
            ("SIGINT", 2),
            ("BUS@openssh.com", 7),
            ("XCPU@openssh.com", 24),
            ("NOSUCH@openssh.com", 15),
        ] {
            assert_eq!(signal_number(name), n, "{name}");
        }
    }

    #[test]
    fn bundled_libssh2_is_new_enough_for_rsa_sha2() {
        let v = libssh2_version();
        let parts: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
        assert!(
            parts.as_slice() >= [1, 11].as_slice(),
            "libssh2 {v} is too old (Debian 12's 1.10 fails rsa-sha2)"
        );
    }
}
