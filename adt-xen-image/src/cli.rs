//! The command line of adt-xen-image: the build (the default, also spelt
//! `build`) and `prepare-root`.
//!
//! Not for: doing any of it (`build`, `root`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where the image spec lives when `--config` is not given.
pub const DEFAULT_SPEC: &str = "/etc/autopkgtest-xen/image.toml";
/// The adt-privd configuration the build writes its image into.
pub const DEFAULT_PRIVD_CONFIG: &str = adt_privd::cli::DEFAULT_CONFIG;

/// Builds an autopkgtest-xen test image on a Xen + LVM host: the origin
/// volume and its root filesystem, one COW volume, domain config and
/// checkpoint per slot, and the image's entry in adt-privd's configuration.
/// Idempotent: a rerun does only what is missing or out of date.
#[derive(Debug, Parser)]
#[command(
    name = "adt-xen-image",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: build (see `build`).
    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build or resume the image described by the spec (the default).
    Build(BuildArgs),
    /// Debootstrap (when the spec's root source is debootstrap) into DIR and
    /// configure it as a testbed root. No LVM, no Xen.
    PrepareRoot(PrepareRootArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// The image spec (TOML).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SPEC)]
    pub config: PathBuf,
    /// Create missing logical volumes (origin, one COW per slot) and, when
    /// the spec names a physical_volume, a missing volume group.
    #[arg(long)]
    pub create_volumes: bool,
    /// Refill the origin even if its stamp says it is current (deletes
    /// every checkpoint of the image).
    #[arg(long)]
    pub refill_origin: bool,
    /// adt-privd's configuration: this image's entry is replaced, the rest kept.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PRIVD_CONFIG)]
    pub privd_config: PathBuf,
    /// Print the commands and file changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PrepareRootArgs {
    /// The image spec (TOML); its [root] section is used.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_SPEC)]
    pub config: PathBuf,
    /// Print the commands and file changes, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Directory to make a testbed root of (empty or absent for debootstrap).
    pub dir: PathBuf,
}

impl Cli {
    /// The subcommand to run, `build` when none was given.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Build(self.build))
    }
}
