//! The host: device-mapper snapshots and Xen domains, behind one small
//! trait so the engine can be driven by the real tools or, in unit tests,
//! by an in-memory simulator.
//!
//! `Tools` runs `dmsetup` and `xl` (paths from the configuration) with a
//! timeout each; every teardown is idempotent: removing what is already
//! gone is success. Not for: deciding what may be created (see `engine`).

use std::future::Future;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A tool that failed: what ran and what it said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{command}: {reason}")]
pub struct HostError {
    pub command: String,
    pub reason: String,
}

pub type HostResult<T> = Result<T, HostError>;

/// What adt-privd needs of the host. Names passed here were made by the
/// engine from its configuration, never taken from a caller.
pub trait Host: Send + Sync + 'static {
    /// Size of the origin block device in 512-byte sectors.
    fn sectors(&self, device: &Path) -> impl Future<Output = HostResult<u64>> + Send;
    fn dm_create(&self, name: &str, table: &str) -> impl Future<Output = HostResult<()>> + Send;
    /// Remove a dm device; success if it does not exist.
    fn dm_remove(&self, name: &str) -> impl Future<Output = HostResult<()>> + Send;
    /// Whether a dm device of this name exists, whatever its target.
    fn dm_exists(&self, name: &str) -> impl Future<Output = HostResult<bool>> + Send;
    /// Names of the snapshot-target dm devices that exist.
    fn dm_list(&self) -> impl Future<Output = HostResult<Vec<String>>> + Send;
    /// `xl restore -e CONFIG CHECKPOINT`.
    fn xl_restore(
        &self,
        config: &Path,
        checkpoint: &Path,
    ) -> impl Future<Output = HostResult<()>> + Send;
    /// Destroy a domain; success if it does not exist.
    fn xl_destroy(&self, name: &str) -> impl Future<Output = HostResult<()>> + Send;
    /// Names of the domains that exist, Domain-0 excluded.
    fn xl_list(&self) -> impl Future<Output = HostResult<Vec<String>>> + Send;
}

/// The real host: runs the configured `dmsetup` and `xl`.
pub struct Tools {
    pub dmsetup: PathBuf,
    pub xl: PathBuf,
    pub timeout: Duration,
    pub restore_timeout: Duration,
    pub remove_retries: u32,
}

/// Output of a finished tool.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(program: &Path, args: &[&str], timeout: Duration) -> HostResult<Output> {
    let command = format!("{} {}", program.display(), args.join(" "));
    tracing::debug!(%command, "running");
    let started = std::time::Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HostError {
            command: command.clone(),
            reason: format!("cannot run: {e}"),
        })?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(HostError {
            command,
            reason: format!("timed out after {} s (killed)", timeout.as_secs()),
        }),
        Ok(Err(e)) => Err(HostError {
            command,
            reason: e.to_string(),
        }),
        Ok(Ok(out)) => {
            tracing::debug!(%command, status = %out.status, seconds = started.elapsed().as_secs_f64(), "ran");
            Ok(Output {
                ok: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

/// Run and require success; the error carries the tool's stderr.
async fn run_ok(program: &Path, args: &[&str], timeout: Duration) -> HostResult<String> {
    let out = run(program, args, timeout).await?;
    if out.ok {
        Ok(out.stdout)
    } else {
        Err(HostError {
            command: format!("{} {}", program.display(), args.join(" ")),
            reason: failure_text(&out),
        })
    }
}

fn failure_text(out: &Output) -> String {
    let text = out.stderr.trim();
    let text = if text.is_empty() {
        out.stdout.trim()
    } else {
        text
    };
    if text.is_empty() {
        "failed with no output".into()
    } else {
        text.to_owned()
    }
}

/// `dmsetup ls` prints `NAME\t(MAJ:MIN)` lines, or "No devices found".
pub fn parse_dm_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("No devices found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `xl list` prints a header line, then `NAME ID MEM VCPUS STATE TIME`.
pub fn parse_xl_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Name"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "Domain-0")
        .map(str::to_owned)
        .collect()
}

impl Host for Tools {
    async fn sectors(&self, device: &Path) -> HostResult<u64> {
        let device = device.to_owned();
        let err = |e: std::io::Error| HostError {
            command: format!("size of {}", device.display()),
            reason: e.to_string(),
        };
        // Seeking to the end gives the size of block devices and files alike.
        let bytes = std::fs::File::open(&device)
            .and_then(|mut f| f.seek(SeekFrom::End(0)))
            .map_err(err)?;
        Ok(bytes / 512)
    }

    async fn dm_create(&self, name: &str, table: &str) -> HostResult<()> {
        run_ok(
            &self.dmsetup,
            &["create", name, "--table", table],
            self.timeout,
        )
        .await
        .map(drop)
    }

    async fn dm_remove(&self, name: &str) -> HostResult<()> {
        // Try first and look only when it fails: one command in the
        // common case, and "already gone" still counts as success.
        let mut attempt = 0;
        loop {
            let error =
                match run_ok(&self.dmsetup, &["remove", "--retry", name], self.timeout).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e,
                };
            // gone whatever its target: a device without a table (dmsetup
            // killed mid-create) is not in `dmsetup ls --target snapshot`
            if !self.dm_exists(name).await? {
                return Ok(());
            }
            if attempt >= self.remove_retries {
                return Err(error);
            }
            tracing::warn!(device = name, attempt, error = %error, "dmsetup remove failed; retrying");
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }

    async fn dm_exists(&self, name: &str) -> HostResult<bool> {
        let out = run_ok(&self.dmsetup, &["ls"], self.timeout).await?;
        Ok(parse_dm_list(&out).iter().any(|n| n == name))
    }

    async fn dm_list(&self) -> HostResult<Vec<String>> {
        let out = run_ok(&self.dmsetup, &["ls", "--target", "snapshot"], self.timeout).await?;
        Ok(parse_dm_list(&out))
    }

    async fn xl_restore(&self, config: &Path, checkpoint: &Path) -> HostResult<()> {
        let config = config.to_string_lossy();
        let checkpoint = checkpoint.to_string_lossy();
        run_ok(
            &self.xl,
            &["restore", "-e", &config, &checkpoint],
            self.restore_timeout,
        )
        .await
        .map(drop)
    }

    async fn xl_destroy(&self, name: &str) -> HostResult<()> {
        match run_ok(&self.xl, &["destroy", name], self.timeout).await {
            Ok(_) => Ok(()),
            // Already gone: that is what was asked for.
            Err(_) if !self.xl_list().await?.iter().any(|n| n == name) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn xl_list(&self) -> HostResult<Vec<String>> {
        let out = run_ok(&self.xl, &["list"], self.timeout).await?;
        Ok(parse_xl_list(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_list_output_is_parsed() {
        assert!(parse_dm_list("No devices found\n").is_empty());
        assert_eq!(
            parse_dm_list("adt-bookworm-0\t(253:3)\nadt-sid-1\t(253:4)\n"),
            vec!["adt-bookworm-0", "adt-sid-1"]
        );
    }

    #[test]
    fn xl_list_output_is_parsed() {
        let out = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
                   Domain-0                                     0  1024     1     r-----      12.3\n\
                   adt-bookworm-0                               3   256     1     -b----       1.0\n";
        assert_eq!(parse_xl_list(out), vec!["adt-bookworm-0"]);
    }

    #[tokio::test]
    async fn a_tool_that_hangs_is_killed_at_the_timeout() {
        let e = run_ok(Path::new("/bin/sleep"), &["10"], Duration::from_millis(200)).await;
        let e = e.unwrap_err();
        assert!(e.reason.contains("timed out"), "{e}");
    }

    #[tokio::test]
    async fn a_failing_tool_reports_its_stderr() {
        let e = run_ok(
            Path::new("/bin/sh"),
            &["-c", "echo device busy >&2; exit 1"],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(e.reason, "device busy");
    }
}
