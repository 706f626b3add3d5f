//! The service's configuration: a TOML file (docs/runner.toml.example)
//! with command-line flags over it, and the command-line arguments of
//! `loop`, `next`, `history`, `web` and `report`. Every piece of state
//! lives under the results directory unless configured otherwise.
//!
//! Not for: acting on it (`service`).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use crate::report::{mail::MailConfig, Reporters};
use crate::select::{Kind, Selector};

/// Where the configuration is looked for when no --config is given.
pub const DEFAULT_CONFIG: &str = "/etc/autopkgtest-xen/runner.toml";

/// Flags shared by the service commands (they override the file).
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Configuration file (TOML; default $ADT_RUNNER_CONFIG, else
    /// /etc/autopkgtest-xen/runner.toml when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Results directory: results tree, history, mail spool, selector state.
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// `adt-runner loop`.
#[derive(Debug, Clone, Default, Args)]
pub struct LoopArgs {
    #[command(flatten)]
    pub common: Common,
    /// round-robin, changed-first, or a program printing `SRC [JSON]`.
    #[arg(long)]
    pub selector: Option<String>,
    /// The archive's Sources index (for the built-in selectors and the
    /// maintainers' addresses).
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// `ssh:[USER@]HOST[:PORT]` or `xen:IMAGE`.
    #[arg(long)]
    pub testbed: Option<String>,
    /// Private key for the ssh login.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// SMTP server for the e-mail reports, HOST:PORT.
    #[arg(long)]
    pub smtp: Option<String>,
    /// Sender of the e-mail reports.
    #[arg(long)]
    pub mail_from: Option<String>,
    /// Test one package (or find nothing to do) and exit.
    #[arg(long)]
    pub once: bool,
}

/// `adt-runner next`.
#[derive(Debug, Clone, Default, Args)]
pub struct NextArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub sources: Option<PathBuf>,
}

/// `adt-runner history SRC`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    pub source: String,
    #[command(flatten)]
    pub common: Common,
    /// Runs to list, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `adt-runner web --out DIR`.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    #[command(flatten)]
    pub common: Common,
    /// Output directory of the static pages.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `adt-runner report DIR`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A stored result directory.
    pub dir: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// The file's contents.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct File {
    pub results: Option<PathBuf>,
    pub selector: Option<String>,
    pub sources: Option<PathBuf>,
    pub fair_every: Option<u64>,
    pub testbed: Option<String>,
    pub identity: Option<PathBuf>,
    pub login: Option<String>,
    pub revert_command: Option<String>,
    pub teardown_command: Option<String>,
    pub capabilities: Option<Vec<String>>,
    pub run_args: Option<Vec<String>>,
    pub release: Option<String>,
    pub arch: Option<String>,
    pub idle_seconds: Option<u64>,
    pub reporters: Option<Vec<String>>,
    pub web_out: Option<PathBuf>,
    pub results_url: Option<String>,
    pub mail: Option<MailFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MailFile {
    pub smtp: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub tail_lines: Option<usize>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any (re-read on SIGHUP).
    pub path: Option<PathBuf>,
    pub results: PathBuf,
    pub selector: Kind,
    pub sources: Option<PathBuf>,
    pub fair_every: u64,
    pub testbed: Option<String>,
    pub identity: Option<PathBuf>,
    pub login: Option<String>,
    pub revert_command: Option<String>,
    pub teardown_command: Option<String>,
    pub capabilities: Vec<String>,
    pub run_args: Vec<String>,
    pub release: String,
    pub arch: String,
    pub idle_seconds: u64,
    pub reporters: Reporters,
    pub web_out: Option<PathBuf>,
    pub results_url: Option<String>,
}

fn default_arch() -> String {
    std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| match std::env::consts::ARCH {
            "x86_64" => "amd64".into(),
            "aarch64" => "arm64".into(),
            a => a.into(),
        })
}

fn default_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unstable".into())
}

/// The configuration file to read: the flag, $ADT_RUNNER_CONFIG, or the
/// default path when it exists.
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ADT_RUNNER_CONFIG").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.exists()))
}

/// Reads the file at `path`.
pub fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("configuration {}: {e}", path.display()))
}

impl Config {
    /// The configuration from `args`' file and flags.
    pub fn load(args: &LoopArgs) -> Result<Config, String> {
        let path = config_path(args.common.config.as_deref());
        let file = match &path {
            Some(p) => read_file(p)?,
            None => File::default(),
        };
        let run_args = file.run_args.clone().unwrap_or_default();
        crate::cli::check_run_args(&run_args).map_err(|e| match &path {
            Some(p) => format!("configuration {}: run-args: {e}", p.display()),
            None => format!("run-args: {e}"),
        })?;
        let mut mail = file.mail.clone().unwrap_or_default();
        if args.smtp.is_some() {
            mail.smtp = args.smtp.clone();
        }
        if args.mail_from.is_some() {
            mail.from = args.mail_from.clone();
        }
        let results = args
            .common
            .results
            .clone()
            .or(file.results)
            .unwrap_or_else(|| PathBuf::from("."));
        let mail = match (mail.smtp, mail.from) {
            (None, None) => None,
            (Some(smtp), Some(from)) => {
                let to = mail.to.unwrap_or_else(|| "{maintainer}".into());
                crate::report::mail::check_template(&to)?;
                crate::report::mail::sender(&from)?;
                Some(MailConfig {
                    smtp,
                    from,
                    to,
                    tail_lines: mail.tail_lines.unwrap_or(40),
                    spool: results.join("spool/mail"),
                })
            }
            _ => {
                return Err(
                    "e-mail reports need both an SMTP server (--smtp, mail.smtp) and a sender (--mail-from, mail.from)"
                        .into(),
                )
            }
        };
        let selector = args
            .selector
            .clone()
            .or(file.selector)
            .unwrap_or_else(|| "round-robin".into());
        Ok(Config {
            path,
            selector: Kind::parse(&selector),
            sources: args.sources.clone().or(file.sources),
            fair_every: file.fair_every.unwrap_or(4),
            testbed: args.testbed.clone().or(file.testbed),
            identity: args.identity.clone().or(file.identity),
            login: file.login,
            teardown_command: file.teardown_command.or(file.revert_command.clone()),
            revert_command: file.revert_command,
            capabilities: file.capabilities.unwrap_or_default(),
            run_args,
            release: file.release.unwrap_or_else(default_release),
            arch: file.arch.unwrap_or_else(default_arch),
            idle_seconds: file.idle_seconds.unwrap_or(60),
            reporters: Reporters {
                programs: file.reporters.unwrap_or_default(),
                mail,
            },
            web_out: file.web_out,
            results_url: file.results_url,
            results,
        })
    }

    /// The configuration of the read-only commands (`next`, `history`,
    /// `web`, `report`): the same file, fewer flags.
    pub fn load_common(common: &Common) -> Result<Config, String> {
        Config::load(&LoopArgs {
            common: common.clone(),
            ..LoopArgs::default()
        })
    }

    pub fn history_path(&self) -> PathBuf {
        self.results.join("history.sqlite")
    }

    pub fn work_dir(&self) -> PathBuf {
        self.results.join(".work")
    }

    pub fn selector(&self) -> Selector {
        Selector {
            kind: self.selector.clone(),
            sources: self.sources.clone(),
            state: self.results.join("state/selector.json"),
            results: self.results.clone(),
            fair_every: self.fair_every,
            history: self.history_path(),
            // Sources with only autodep8's tests count where the runs will
            // generate them.
            autodep8: crate::autodep8::installed()
                && !self.run_args.iter().any(|a| a == "--no-auto-control"),
        }
    }

    pub fn store(&self) -> crate::results::Store {
        crate::results::Store {
            root: self.results.clone(),
            release: self.release.clone(),
            arch: self.arch.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_loads() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runner.toml.example");
        let c = Config::load(&args(&example)).unwrap();
        assert_eq!(c.results, Path::new("."), "each worker keeps its own state");
        assert_eq!(c.web_out.as_deref(), Some(Path::new("web")));
        assert!(c.reporters.mail.is_some());
    }

    fn args(config: &Path) -> LoopArgs {
        LoopArgs {
            common: Common {
                config: Some(config.to_path_buf()),
                results: None,
            },
            ..LoopArgs::default()
        }
    }

    #[test]
    fn flags_override_the_file_and_state_lives_under_results() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runner.toml");
        std::fs::write(
            &p,
            "results = \"/srv/r\"\nselector = \"changed-first\"\ntestbed = \"xen:bookworm\"\n\
             release = \"bookworm\"\narch = \"amd64\"\n[mail]\nsmtp = \"localhost:25\"\nfrom = \"a@b.org\"\nto = \"{source}@x.org\"\n",
        )
        .unwrap();
        let c = Config::load(&args(&p)).unwrap();
        assert_eq!(c.selector, Kind::ChangedFirst);
        assert_eq!(
            c.reporters.mail.as_ref().unwrap().spool,
            Path::new("/srv/r/spool/mail")
        );
        let mut a = args(&p);
        a.testbed = Some("ssh:h".into());
        a.smtp = Some("127.0.0.1:2525".into());
        a.common.results = Some("/tmp/x".into());
        let c = Config::load(&a).unwrap();
        assert_eq!(c.testbed.as_deref(), Some("ssh:h"));
        assert_eq!(c.reporters.mail.as_ref().unwrap().smtp, "127.0.0.1:2525");
        assert_eq!(c.history_path(), Path::new("/tmp/x/history.sqlite"));
    }

    #[test]
    fn no_auto_control_in_run_args_keeps_autodep8_sources_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runner.toml");
        std::fs::write(&p, "run-args = [\"--no-auto-control\"]\n").unwrap();
        assert!(!Config::load(&args(&p)).unwrap().selector().autodep8);
        std::fs::write(&p, "run-args = [\"--timeout-test\", \"100\"]\n").unwrap();
        assert_eq!(
            Config::load(&args(&p)).unwrap().selector().autodep8,
            crate::autodep8::installed()
        );
    }

    #[test]
    fn run_args_may_not_move_the_output_the_loop_stores() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runner.toml");
        for bad in [
            "\"-o\", \"/tmp/x\"",
            "\"--output-dir=/tmp/x\"",
            "\"-l\", \"/tmp/log\"",
            "\"--log-file\", \"/tmp/log\"",
            "\"--summary-file=/tmp/s\"",
        ] {
            std::fs::write(&p, format!("run-args = [\"-B\", {bad}]\n")).unwrap();
            let e = Config::load(&args(&p)).unwrap_err();
            assert!(
                e.contains(&p.display().to_string()) && e.contains("run-args"),
                "{bad}: {e}"
            );
        }
        // a value that looks like an option is a value; typos are caught
        std::fs::write(
            &p,
            "run-args = [\"-q\", \"--setup-commands=-o is fine here\"]\n",
        )
        .unwrap();
        assert!(Config::load(&args(&p)).is_ok());
        std::fs::write(&p, "run-args = [\"--timeout-tset\", \"5\"]\n").unwrap();
        let e = Config::load(&args(&p)).unwrap_err();
        assert!(
            e.contains("run-args") && e.contains("--timeout-tset"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_in_the_file_name_the_file_and_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("runner.toml");
        std::fs::write(&p, "selectr = \"round-robin\"\n").unwrap();
        let e = Config::load(&args(&p)).unwrap_err();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("selectr"),
            "{e}"
        );
        std::fs::write(&p, "[mail]\nsmtp = \"h:25\"\n").unwrap();
        assert!(Config::load(&args(&p)).unwrap_err().contains("sender"));
        std::fs::write(
            &p,
            "[mail]\nsmtp = \"h:25\"\nfrom = \"a@b\"\nto = \"{maint}\"\n",
        )
        .unwrap();
        assert!(Config::load(&args(&p))
            .unwrap_err()
            .contains("unknown placeholder"));
    }
}
