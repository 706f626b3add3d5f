//! The command line: `adt-runner run SRC --testbed SPEC ...`, turned into a
//! pipeline request and a testbed opener.
//!
//! Not for: doing any of it (`pipeline`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::RunError;
use crate::pipeline::{self, Opener, Request};
use crate::session::Timeouts;
use crate::source::Source;
use crate::testbed::{parse_address, SshTestbed, Testbed};
use crate::verdict::ERROR;
use crate::xen::XenTestbed;

#[derive(Debug, Parser)]
#[command(
    name = "adt-runner",
    version,
    about = "Unprivileged runner of autopkgtest-xen"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Test one source package; exit codes as autopkgtest's.
    Run(Box<RunArgs>),
    /// Forever: select, run, store, report (SIGTERM: finish the current
    /// package and exit; a second one: abort; SIGHUP: reload).
    Loop(crate::loopconfig::LoopArgs),
    /// Print what the selector would pick next, and why.
    Next(crate::loopconfig::NextArgs),
    /// Show the runs of a source and their classification.
    History(crate::loopconfig::HistoryArgs),
    /// Render the static web report.
    Web(crate::loopconfig::WebArgs),
    /// Run the configured reporters on a stored result.
    Report(crate::loopconfig::ReportArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Source package name (apt-get source in the testbed), .dsc, or unbuilt tree.
    pub source: String,
    /// `ssh:[USER@]HOST[:PORT]` or `xen:IMAGE`.
    #[arg(long)]
    pub testbed: String,
    /// Private key for the ssh login.
    #[arg(long)]
    pub identity: Option<PathBuf>,
    /// ssh testbeds: host command that reverts the testbed (gives the
    /// revert and revert-full-system capabilities).
    #[arg(long)]
    pub revert_command: Option<String>,
    /// ssh testbeds: an extra capability the testbed has (repeatable).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// Seconds to keep trying to log in to the testbed.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub connect_timeout: u64,
    /// xen testbeds: the user to log in as.
    #[arg(long, default_value = "root")]
    pub login: String,
    /// Output directory (created; must be empty).
    #[arg(long, short = 'o')]
    pub output_dir: Option<PathBuf>,
    /// Extra environment for the tests, `K=V` (repeatable).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// A package version this run tests against, `SRC/VERSION`
    /// (repeatable): the tests get them all in ADT_TEST_TRIGGERS, as
    /// autopkgtest-cloud gives them, and testinfo.json keeps it. Nothing
    /// is pinned: the testbed's apt sources decide what is installed.
    #[arg(long = "trigger", value_name = "SRC/VERSION")]
    pub triggers: Vec<String>,
    /// Run only this test (repeatable).
    #[arg(long = "testname", alias = "test-name")]
    pub only_tests: Vec<String>,
    /// Do not run this test (repeatable).
    #[arg(long = "skip-test")]
    pub skip_tests: Vec<String>,
    /// Do not build a .dsc or tree just to use its binaries (autopkgtest -B).
    #[arg(long, short = 'B')]
    pub no_built_binaries: bool,
    /// Do not let autodep8 generate tests, even if it is installed
    /// (autopkgtest's --no-auto-control).
    #[arg(long)]
    pub no_auto_control: bool,
    /// A binary package the tests' `@` installs instead of the archive's
    /// (autopkgtest's .deb argument; repeatable). Implies -B, as in
    /// autopkgtest: the tree or .dsc is then built only for build-needed
    /// tests.
    #[arg(long = "binary", value_name = "DEB")]
    pub binaries: Vec<PathBuf>,
    /// Parallel jobs for builds and DEB_BUILD_OPTIONS (default: nproc).
    #[arg(long)]
    pub build_parallel: Option<String>,
    #[arg(long, value_name = "S")]
    pub timeout_short: Option<u64>,
    #[arg(long, value_name = "S")]
    pub timeout_copy: Option<u64>,
    #[arg(long, value_name = "S")]
    pub timeout_install: Option<u64>,
    #[arg(long, value_name = "S")]
    pub timeout_test: Option<u64>,
    #[arg(long, value_name = "S")]
    pub timeout_build: Option<u64>,
}

impl RunArgs {
    fn timeouts(&self) -> Timeouts {
        let d = Timeouts::default();
        Timeouts {
            short: self.timeout_short.unwrap_or(d.short),
            copy: self.timeout_copy.unwrap_or(d.copy),
            install: self.timeout_install.unwrap_or(d.install),
            test: self.timeout_test.unwrap_or(d.test),
            build: self.timeout_build.unwrap_or(d.build),
        }
    }

    fn opener(&self) -> Result<Opener<'_>, String> {
        if let Some(addr) = self.testbed.strip_prefix("ssh:") {
            let target = parse_address(addr, self.identity.clone())
                .map_err(|e| format!("--testbed: {e}"))?;
            return Ok(Box::new(move || {
                let tb = SshTestbed::open(
                    target,
                    self.revert_command.clone(),
                    self.capabilities.clone(),
                    std::time::Duration::from_secs(self.connect_timeout),
                )?;
                Ok(Box::new(tb) as Box<dyn Testbed>)
            }));
        }
        if let Some(image) = self.testbed.strip_prefix("xen:") {
            return Ok(Box::new(move || {
                let tb = XenTestbed::open(image, &self.login, self.identity.clone())
                    .map_err(RunError::from)?;
                Ok(Box::new(tb) as Box<dyn Testbed>)
            }));
        }
        Err(format!(
            "--testbed {:?}: expected ssh:[USER@]HOST[:PORT] or xen:IMAGE",
            self.testbed
        ))
    }
}

/// Runs the parsed command line; returns the exit code.
pub fn main(cli: Cli, command_line: String) -> i32 {
    match cli.command {
        Command::Run(args) => run(&args, command_line),
        Command::Loop(args) => crate::service::run(&args),
        Command::Next(args) => crate::service::commands::next(&args),
        Command::History(args) => crate::service::commands::history(&args),
        Command::Web(args) => crate::service::commands::web(&args),
        Command::Report(args) => crate::service::commands::report(&args),
    }
}

fn run(args: &RunArgs, command_line: String) -> i32 {
    let fail = |m: String| {
        eprintln!("adt-runner: error: {m}");
        ERROR
    };
    let source = match Source::from_arg(&args.source) {
        Ok(s) => s,
        Err(m) => return fail(m),
    };
    if let Some(bad) = args.env.iter().find(|e| !e.contains('=')) {
        return fail(format!("--env {bad:?}: expected K=V"));
    }
    let env = match crate::select::trigger_env(&args.env, &args.triggers) {
        Ok(env) => env,
        Err(m) => return fail(format!("--trigger: {m}")),
    };
    let opener = match args.opener() {
        Ok(o) => o,
        Err(m) => return fail(m),
    };
    crate::signal::install();
    let req = Request {
        source,
        output_dir: args.output_dir.clone(),
        env,
        only_tests: args.only_tests.clone(),
        skip_tests: args.skip_tests.clone(),
        timeouts: args.timeouts(),
        // as autopkgtest: given .debs imply -B
        built_binaries: !args.no_built_binaries && args.binaries.is_empty(),
        extra_binaries: args.binaries.clone(),
        auto_control: !args.no_auto_control,
        build_parallel: args.build_parallel.clone(),
        command_line,
    };
    pipeline::run(&req, opener)
}
