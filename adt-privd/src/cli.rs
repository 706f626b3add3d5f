//! The command line of adt-privd, in the library so that man pages and
//! shell completions are generated from the same definition.

use std::path::PathBuf;

use clap::Parser;

/// Where the configuration lives when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/autopkgtest-xen/privd.toml";

/// Root helper of autopkgtest-xen: device-mapper snapshots and Xen domains
/// for unprivileged test runners, over D-Bus, every call checked by polkit.
#[derive(Parser, Debug)]
#[command(name = "adt-privd", version)]
pub struct Args {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// D-Bus address to serve on instead of the system bus (for tests).
    #[arg(long, value_name = "ADDRESS")]
    pub bus: Option<String>,
}
