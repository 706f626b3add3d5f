//! Testbeds: a machine reachable over ssh, its capabilities in autopkgtest's
//! words, and how to revert it. `ssh:[USER@]HOST[:PORT]` is an existing
//! host (reverted by an optional host command); `xen:IMAGE` lives in
//! `xen`.
//!
//! Not for: what the runner does inside the testbed (`session`), nor the
//! DEP-8 engine; this layer knows nothing about packages, so that a
//! virtualisation server can reuse it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::ssh::{Ssh, SshError, Target};

/// A testbed failed (autopkgtest's `TestbedFailure`: exit code 16).
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("{0}")]
    Other(String),
}

/// One testbed the runner holds.
pub trait Testbed {
    /// The logged-in session; only while `is_up`.
    fn ssh(&self) -> &Ssh;
    /// False once a failed revert left no testbed to log in to.
    fn is_up(&self) -> bool {
        true
    }
    /// autopkgtest capabilities: `revert`, `revert-full-system`,
    /// `isolation-machine`, ... (`root-on-testbed` is decided by `session`).
    fn caps(&self) -> BTreeSet<String>;
    /// Brings the testbed back to its pristine state and logs in again.
    fn revert(&mut self) -> Result<(), TestbedError>;
    /// How the testbed was asked for, for testinfo.json.
    fn describe(&self) -> String;
    /// Releases the testbed; idempotent.
    fn stop(&mut self) -> Result<(), TestbedError>;
}

/// How long to wait for sshd after a start or revert.
pub const SSH_WAIT: Duration = Duration::from_secs(120);

/// Parses `[USER@]HOST[:PORT]` (IPv6 in brackets), defaulting to root:22.
pub fn parse_address(spec: &str, identity: Option<PathBuf>) -> Result<Target, String> {
    let (user, hostport) = match spec.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (u.to_string(), h),
        Some(_) => return Err(format!("empty user in {spec:?}")),
        None => ("root".to_string(), spec),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unclosed [ in {spec:?}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {spec:?}"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("bad port {p:?} in {spec:?}"))?,
        None => 22,
    };
    Ok(Target {
        host: host.to_string(),
        port,
        user,
        identity,
    })
}

/// An existing machine; reverting runs `revert_command` on the host.
pub struct SshTestbed {
    target: Target,
    wait: Duration,
    ssh: Ssh,
    revert_command: Option<String>,
    extra_caps: Vec<String>,
}

impl SshTestbed {
    pub fn open(
        target: Target,
        revert_command: Option<String>,
        extra_caps: Vec<String>,
        wait: Duration,
    ) -> Result<Self, TestbedError> {
        let ssh = Ssh::connect(&target, wait)?;
        Ok(SshTestbed {
            target,
            wait,
            ssh,
            revert_command,
            extra_caps,
        })
    }
}

impl Testbed for SshTestbed {
    fn ssh(&self) -> &Ssh {
        &self.ssh
    }

    fn caps(&self) -> BTreeSet<String> {
        let mut caps: BTreeSet<String> = self.extra_caps.iter().cloned().collect();
        if self.revert_command.is_some() {
            caps.insert("revert".into());
            caps.insert("revert-full-system".into());
        }
        caps
    }

    fn revert(&mut self) -> Result<(), TestbedError> {
        let Some(cmd) = &self.revert_command else {
            return Err(TestbedError::Other(
                "this ssh testbed cannot revert (no --revert-command)".into(),
            ));
        };
        tracing::info!(command = %cmd, "reverting ssh testbed");
        let status = Command::new("sh")
            .args(["-c", cmd])
            .status()
            .map_err(|e| TestbedError::Other(format!("cannot run revert command {cmd:?}: {e}")))?;
        if !status.success() {
            return Err(TestbedError::Other(format!(
                "revert command {cmd:?} failed: {status}"
            )));
        }
        self.ssh = Ssh::connect(&self.target, self.wait)?;
        Ok(())
    }

    fn describe(&self) -> String {
        let t = &self.target;
        format!("ssh:{}@{}:{}", t.user, t.host, t.port)
    }

    fn stop(&mut self) -> Result<(), TestbedError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_defaults() {
        let t = parse_address("example.org", None).unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("root", "example.org", 22)
        );
        let t = parse_address("tester@127.0.0.1:2222", None).unwrap();
        assert_eq!(
            (t.user.as_str(), t.host.as_str(), t.port),
            ("tester", "127.0.0.1", 2222)
        );
        let t = parse_address("[::1]:2022", None).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 2022));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        assert!(parse_address("h:notaport", None)
            .unwrap_err()
            .contains("bad port"));
        assert!(parse_address("@h", None)
            .unwrap_err()
            .contains("empty user"));
        assert!(parse_address(":22", None).unwrap_err().contains("no host"));
    }
}
