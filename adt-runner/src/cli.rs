//! The command line: `adt-runner run SRC --testbed SPEC ...`, turned into a
//! pipeline request and a testbed opener.
//!
//! Not for: doing any of it (`pipeline`).

use std::path::{Path, PathBuf};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::aptconf::AptSetup;
use crate::error::RunError;
use crate::output::Destinations;
use crate::pipeline::{self, Opener, Request};
use crate::session::{Setup, Timeouts};
use crate::source::Source;
use crate::testbed::{parse_address, SshTestbed, Testbed};
use crate::verdict::{NeedsInternet, ERROR};
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

impl Cli {
    /// Parses the process's arguments, keeping `--setup-commands` and
    /// `-U` in the order given (as autopkgtest appends both to one list).
    pub fn try_parse_ordered() -> Result<Cli, clap::Error> {
        Cli::from_matches(&Cli::command().try_get_matches()?)
    }

    /// `m` as a `Cli`, the setup commands of `run` in command-line order.
    fn from_matches(m: &ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli = Cli::from_arg_matches(m)?;
        if let (Command::Run(args), Some(("run", sub))) = (&mut cli.command, m.subcommand()) {
            args.setup_commands = ordered_setup_commands(sub);
        }
        Ok(cli)
    }
}

/// Checks the loop's `run-args` as `adt-runner run` will take them: known
/// options with valid values, and none that moves the output directory,
/// log or summary (the loop chooses the directory and reads both there).
pub fn check_run_args(run_args: &[String]) -> Result<(), String> {
    let mut argv: Vec<&str> = vec!["adt-runner", "run", "SRC"];
    if !run_args
        .iter()
        .any(|a| a == "--testbed" || a.starts_with("--testbed="))
    {
        argv.extend(["--testbed", "ssh:localhost"]);
    }
    argv.extend(run_args.iter().map(String::as_str));
    let m = Cli::command().try_get_matches_from(argv).map_err(|e| {
        let text = e.render().to_string();
        text.lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string()
    })?;
    let Some(("run", sub)) = m.subcommand() else {
        unreachable!("argv names the run subcommand")
    };
    for (id, opt) in [
        ("output_dir", "--output-dir"),
        ("log_file", "--log-file"),
        ("summary_file", "--summary-file"),
    ] {
        if sub.contains_id(id) {
            return Err(format!(
                "{opt} would move the run's output out of the results the loop keeps; the loop chooses the output directory itself"
            ));
        }
    }
    if let Ok(Cli {
        command: Command::Run(args),
        ..
    }) = Cli::from_matches(&m)
    {
        args.apt_setup()?;
    }
    Ok(())
}

/// autopkgtest's `-U`: apt-get update (retried unless an apt source is
/// missing, which exits 100: the package's fault), dist-upgrade, autoremove.
pub const APT_UPGRADE: &str = concat!(
    "(O=$(bash -o pipefail -ec 'apt-get update | tee /proc/self/fd/2') ||",
    "{ [ \"${O%404*Not Found*}\" = \"$O\" ] || exit 100; sleep 15; apt-get update; }",
    " || { sleep 60; apt-get update; } || false)",
    " && $(command -v eatmydata || true) apt-get dist-upgrade -y -o ",
    "Dpkg::Options::=\"--force-confnew\"",
    " && $(command -v eatmydata || true) apt-get --purge autoremove -y"
);

/// `--setup-commands` values and `-U` flags merged in command-line order.
fn ordered_setup_commands(m: &ArgMatches) -> Vec<String> {
    let mut all: Vec<(usize, String)> = Vec::new();
    if let (Some(idx), Some(vals)) = (
        m.indices_of("setup_commands"),
        m.get_many::<String>("setup_commands"),
    ) {
        all.extend(idx.zip(vals.cloned()));
    }
    if let Some(idx) = m.indices_of("apt_upgrade") {
        all.extend(idx.map(|i| (i, APT_UPGRADE.to_string())));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, c)| c).collect()
}

/// Where autopkgtest keeps the setup scripts a bare name refers to
/// (`--setup-commands setup-testbed`); used when it is installed.
const SHIPPED_SETUP_COMMANDS: &str = "/usr/share/autopkgtest/setup-commands";

/// autopkgtest's reading of a `--setup-commands` value: a bare name of a
/// shipped script, or an existing file, stands for its contents (stripped);
/// anything else is the commands themselves.
fn setup_commands_text(value: &str, shipped: &Path) -> Result<String, String> {
    let mut path = PathBuf::from(value);
    if !value.contains('/') && shipped.join(value).exists() {
        path = shipped.join(value);
    }
    if !path.exists() {
        return Ok(value.to_string());
    }
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read setup commands from {}: {e}", path.display()))
}

/// `--copy HOSTPATH:TESTBEDPATH`, the host path existing.
fn parse_copy(arg: &str) -> Result<(PathBuf, String), String> {
    let Some((host, tb)) = arg.split_once(':') else {
        return Err(format!(
            "--copy argument must be HOSTPATH:TESTBEDPATH: {arg}"
        ));
    };
    if !Path::new(host).exists() {
        return Err(format!("--copy host path {host} does not exist"));
    }
    Ok((PathBuf::from(host), tb.to_string()))
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
    /// Write the log to this file (emptied first) instead of the output
    /// directory's `log`.
    #[arg(long, short = 'l', value_name = "LOGFILE")]
    pub log_file: Option<PathBuf>,
    /// Write the summary to this file (emptied first) instead of the
    /// output directory's `summary`.
    #[arg(long, value_name = "SUMMARY")]
    pub summary_file: Option<PathBuf>,
    /// Say nothing but warnings, errors and the test results.
    #[arg(long, short = 'q')]
    pub quiet: bool,
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
    #[arg(long = "test-name", alias = "testname")]
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
    /// Run these commands as root after opening the testbed and after
    /// every revert (repeatable): commands, a file holding them, or the
    /// name of one of autopkgtest's shipped scripts (setup-testbed, ...).
    /// Exit status 100 blames the package; others, the testbed.
    #[arg(long, value_name = "COMMANDS_OR_PATH")]
    pub setup_commands: Vec<String>,
    /// Run apt update, dist-upgrade and autoremove as a setup command (in
    /// its place among --setup-commands).
    #[arg(long, short = 'U', action = clap::ArgAction::Append, num_args = 0, default_missing_value = "true")]
    pub apt_upgrade: Vec<bool>,
    /// As --setup-commands, run after them and after the testbed-packages
    /// list is taken (autopkgtest: also after every reboot).
    #[arg(long, value_name = "COMMANDS_OR_PATH")]
    pub setup_commands_boot: Vec<String>,
    /// Copy a host file or directory into the testbed after opening it
    /// (repeatable), before the setup commands.
    #[arg(long, value_name = "HOSTPATH:TESTBEDPATH")]
    pub copy: Vec<String>,
    /// Add this apt source line to the testbed (repeatable), after the
    /// copies and before the setup commands.
    #[arg(long, value_name = "\"deb http://MIRROR SUITE COMPONENT...\"")]
    pub add_apt_source: Vec<String>,
    /// Add deb and deb-src lines for RELEASE, on the mirror and with the
    /// components of the testbed's first apt source (repeatable).
    #[arg(long, value_name = "RELEASE")]
    pub add_apt_release: Vec<String>,
    /// Pin these packages (src:NAME: the binaries of source NAME) to
    /// RELEASE, and the others to the default release (repeatable).
    #[arg(long, value_name = "RELEASE=PKG,src:NAME,...")]
    pub pin_packages: Vec<String>,
    /// Add apt sources for the pocket DEFAULT-RELEASE-POCKET of every http,
    /// https or file source; with packages, pin them to it (repeatable).
    #[arg(long, value_name = "POCKET[=PKG,src:NAME,...]")]
    pub apt_pocket: Vec<String>,
    /// The release the packages not pinned come from (default: the release
    /// of the testbed's first apt source).
    #[arg(long, value_name = "SUITE_OR_CODENAME")]
    pub apt_default_release: Option<String>,
    /// When test dependencies cannot be installed under the pinning of
    /// --apt-pocket or --pin-packages, fail instead of retrying without it.
    #[arg(long)]
    pub no_apt_fallback: bool,
    /// Run tests even if these restrictions would keep them from running
    /// here (comma-separated, repeatable).
    #[arg(
        long,
        value_name = "RESTRICTION[,RESTRICTION...]",
        value_delimiter = ','
    )]
    pub ignore_restrictions: Vec<String>,
    /// Tests with needs-internet: run them (run), run them and count a
    /// failure as a skip (try), or skip them (skip).
    #[arg(long, value_enum, default_value = "run")]
    pub needs_internet: NeedsInternet,
    /// Run tests (those without needs-root) and builds as USER (needs
    /// root on the testbed) instead of the login user or one made for the
    /// run.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Command to gain root during the package build, passed to
    /// dpkg-buildpackage -r.
    #[arg(long, value_name = "GAINROOT")]
    pub gain_root: Option<String>,
    /// Set LANG for builds and tests to LANGVAL (default: C.UTF-8).
    #[arg(long, value_name = "LANGVAL")]
    pub set_lang: Option<String>,
    /// Check the test control file and exit (after the build, if any:
    /// give -B to skip it).
    #[arg(long, short = 'V')]
    pub validate: bool,
    /// Multiply the timeouts not given explicitly by this.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub timeout_factor: f64,
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
    /// Each timeout as given, else autopkgtest's default times
    /// `--timeout-factor` (truncated, as Python's `int`).
    fn timeouts(&self) -> Timeouts {
        let d = Timeouts::default();
        let f = |given: Option<u64>, default: u64| {
            given.unwrap_or((default as f64 * self.timeout_factor) as u64)
        };
        Timeouts {
            short: f(self.timeout_short, d.short),
            copy: f(self.timeout_copy, d.copy),
            install: f(self.timeout_install, d.install),
            test: f(self.timeout_test, d.test),
            build: f(self.timeout_build, d.build),
        }
    }

    /// The setup commands (files read), boot commands and copies.
    fn setup(&self, shipped: &Path) -> Result<Setup, String> {
        let read = |v: &Vec<String>| -> Result<Vec<String>, String> {
            v.iter().map(|c| setup_commands_text(c, shipped)).collect()
        };
        Ok(Setup {
            commands: read(&self.setup_commands)?,
            boot_commands: read(&self.setup_commands_boot)?,
            copies: self
                .copy
                .iter()
                .map(|c| parse_copy(c))
                .collect::<Result<_, _>>()?,
            user: self.user.clone(),
            apt: self.apt_setup()?,
        })
    }

    /// The apt sources and pinning options, checked.
    fn apt_setup(&self) -> Result<AptSetup, String> {
        let apt = AptSetup {
            sources: self.add_apt_source.clone(),
            releases: self.add_apt_release.clone(),
            pockets: self.apt_pocket.clone(),
            pins: self.pin_packages.clone(),
            default_release: self.apt_default_release.clone(),
            fallback: !self.no_apt_fallback,
        };
        apt.check()?;
        Ok(apt)
    }

    /// Opens the testbed, and names it as testinfo.json's `virt_server`
    /// does (known before it is opened, as autopkgtest's is).
    fn opener(&self) -> Result<(Opener<'_>, String), String> {
        if let Some(addr) = self.testbed.strip_prefix("ssh:") {
            let target = parse_address(addr, self.identity.clone())
                .map_err(|e| format!("--testbed: {e}"))?;
            let named = format!("ssh:{target}");
            let open: Opener<'_> = Box::new(move || {
                let tb = SshTestbed::open(
                    target,
                    self.revert_command.clone(),
                    self.capabilities.clone(),
                    std::time::Duration::from_secs(self.connect_timeout),
                )?;
                Ok(Box::new(tb) as Box<dyn Testbed>)
            });
            return Ok((open, named));
        }
        if let Some(image) = self.testbed.strip_prefix("xen:") {
            let open: Opener<'_> = Box::new(move || {
                let tb = XenTestbed::open(image, &self.login, self.identity.clone())
                    .map_err(RunError::from)?;
                Ok(Box::new(tb) as Box<dyn Testbed>)
            });
            return Ok((open, format!("xen:{image}")));
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
    let mut env = match crate::select::trigger_env(&args.env, &args.triggers) {
        Ok(env) => env,
        Err(m) => return fail(format!("--trigger: {m}")),
    };
    if let Some(lang) = &args.set_lang {
        env.push(format!("LANG={lang}"));
    }
    if !(args.timeout_factor.is_finite() && args.timeout_factor > 0.0) {
        return fail(format!(
            "--timeout-factor {}: expected a positive number",
            args.timeout_factor
        ));
    }
    let setup = match args.setup(Path::new(SHIPPED_SETUP_COMMANDS)) {
        Ok(s) => s,
        Err(m) => return fail(m),
    };
    let (opener, testbed) = match args.opener() {
        Ok(o) => o,
        Err(m) => return fail(m),
    };
    crate::signal::install();
    let req = Request {
        source,
        output: Destinations {
            dir: args.output_dir.clone(),
            log_file: args.log_file.clone(),
            summary_file: args.summary_file.clone(),
            quiet: args.quiet,
        },
        env,
        only_tests: args.only_tests.clone(),
        skip_tests: args.skip_tests.clone(),
        timeouts: args.timeouts(),
        // as autopkgtest: given .debs imply -B
        built_binaries: !args.no_built_binaries && args.binaries.is_empty(),
        extra_binaries: args.binaries.clone(),
        auto_control: !args.no_auto_control,
        build_parallel: args.build_parallel.clone(),
        setup,
        ignore_restrictions: args.ignore_restrictions.clone(),
        needs_internet: args.needs_internet,
        gain_root: args.gain_root.clone(),
        validate: args.validate,
        command_line,
        testbed,
    };
    pipeline::run(&req, opener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_options_are_read_and_checked() {
        let a = run_args(&[
            "--add-apt-source=deb [trusted=yes] file:/srv/r ./",
            "--add-apt-release=trixie",
            "--apt-pocket=backports=foo,src:bar",
            "--pin-packages=unstable=baz",
            "--apt-default-release=stable",
            "--no-apt-fallback",
        ]);
        let apt = a.apt_setup().unwrap();
        assert_eq!(apt.sources, ["deb [trusted=yes] file:/srv/r ./"]);
        assert_eq!(apt.releases, ["trixie"]);
        assert_eq!(apt.pockets, ["backports=foo,src:bar"]);
        assert_eq!(apt.pins, ["unstable=baz"]);
        assert_eq!(apt.default_release.as_deref(), Some("stable"));
        assert!(!apt.fallback);
        assert!(run_args(&[]).apt_setup().unwrap().fallback);
        // the loop refuses a bad value when it reads its configuration
        let e = check_run_args(&["--pin-packages=unstable".into()]).unwrap_err();
        assert!(
            e.contains("--pin-packages unstable: expected RELEASE="),
            "{e}"
        );
        assert!(check_run_args(&["--pin-packages=unstable=src:foo".into()]).is_ok());
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        let mut full = vec!["adt-runner", "run", "src", "--testbed", "ssh:h"];
        full.extend_from_slice(argv);
        let m = Cli::command().try_get_matches_from(full).unwrap();
        let Command::Run(args) = Cli::from_matches(&m).unwrap().command else {
            unreachable!()
        };
        *args
    }

    #[test]
    fn apt_upgrade_keeps_its_place_among_setup_commands() {
        let a = run_args(&["--setup-commands", "one", "-U", "--setup-commands=two"]);
        assert_eq!(a.setup_commands, ["one", APT_UPGRADE, "two"]);
        let a = run_args(&["--apt-upgrade", "--setup-commands", "one"]);
        assert_eq!(a.setup_commands, [APT_UPGRADE, "one"]);
        let a = run_args(&["-U", "--setup-commands", "one", "-U"]);
        assert_eq!(a.setup_commands, [APT_UPGRADE, "one", APT_UPGRADE]);
        assert!(run_args(&[]).setup_commands.is_empty());
    }

    #[test]
    fn apt_upgrade_is_autopkgtests_command_word_for_word() {
        // autopkgtest_args.py, -U's const, as Python joins it
        let python = r#"(O=$(bash -o pipefail -ec 'apt-get update | tee /proc/self/fd/2') ||{ [ "${O%404*Not Found*}" = "$O" ] || exit 100; sleep 15; apt-get update; } || { sleep 60; apt-get update; } || false) && $(command -v eatmydata || true) apt-get dist-upgrade -y -o Dpkg::Options::="--force-confnew" && $(command -v eatmydata || true) apt-get --purge autoremove -y"#;
        assert_eq!(APT_UPGRADE, python);
    }

    #[test]
    fn setup_commands_are_text_a_file_or_a_shipped_name() {
        let d = tempfile::tempdir().unwrap();
        let shipped = d.path().join("shipped");
        std::fs::create_dir(&shipped).unwrap();
        std::fs::write(shipped.join("setup-testbed"), "shipped script\n").unwrap();
        let file = d.path().join("mine.sh");
        std::fs::write(&file, "\n  echo from file\n\n").unwrap();
        let t = |v: &str| setup_commands_text(v, &shipped).unwrap();
        assert_eq!(t("setup-testbed"), "shipped script");
        assert_eq!(t(file.to_str().unwrap()), "echo from file");
        assert_eq!(t("apt-get update"), "apt-get update");
        // a name with a slash is a path, never a shipped script
        assert_eq!(t("./setup-testbed"), "./setup-testbed");
        let dir = d.path().to_str().unwrap();
        let e = setup_commands_text(dir, &shipped).unwrap_err();
        assert!(
            e.starts_with(&format!("cannot read setup commands from {dir}: ")),
            "{e}"
        );
    }

    #[test]
    fn copy_needs_a_colon_and_an_existing_host_path() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().display().to_string();
        assert_eq!(
            parse_copy(&format!("{host}:/tmp/x:y")).unwrap(),
            (d.path().to_path_buf(), "/tmp/x:y".to_string())
        );
        assert_eq!(
            parse_copy("nocolon").unwrap_err(),
            "--copy argument must be HOSTPATH:TESTBEDPATH: nocolon"
        );
        assert_eq!(
            parse_copy("/no/such/file:/tmp/x").unwrap_err(),
            "--copy host path /no/such/file does not exist"
        );
    }

    #[test]
    fn timeout_factor_scales_only_the_defaults() {
        let t = run_args(&["--timeout-factor", "0.5", "--timeout-test", "7"]).timeouts();
        assert_eq!(
            (t.short, t.copy, t.install, t.test, t.build),
            (50, 150, 1500, 7, 50000)
        );
        // truncated as Python's int(): 100 * 0.0001 is no limit at all
        let t = run_args(&["--timeout-factor=0.0001"]).timeouts();
        assert_eq!((t.short, t.test), (0, 1));
    }

    #[test]
    fn ignore_restrictions_split_on_commas_and_repeat() {
        let a = run_args(&[
            "--ignore-restrictions",
            "needs-reboot,isolation-machine",
            "--ignore-restrictions=breaks-testbed",
        ]);
        assert_eq!(
            a.ignore_restrictions,
            ["needs-reboot", "isolation-machine", "breaks-testbed"]
        );
    }
}
