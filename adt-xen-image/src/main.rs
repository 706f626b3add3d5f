//! adt-xen-image: builds a test image of autopkgtest-xen on a Xen + LVM
//! host (origin, COW volumes, domain configs, checkpoints) and writes its
//! entry into adt-privd's configuration; `prepare-root` makes a testbed
//! root in a plain directory. See docs/adt-xen-image.md.
//!
//! Exit status: 0 done, 1 refused or failed (the message says why and what
//! to do), 2 bad command line. Not for: any step itself (see `build`).

mod build;
mod error;
mod files;
mod host;
mod layout;
mod origin;
mod preflight;
mod privd;
mod root;
mod slots;
mod spec;
#[cfg(test)]
mod testing;
mod volumes;

use std::process::ExitCode;

use clap::Parser;

use adt_xen_image::cli::{BuildArgs, Cli, Command, PrepareRootArgs};
use build::{Build, Options};
use error::{Error, Result};
use host::{DryRun, Host, RealHost, Toolbox};
use spec::Spec;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match cli.into_command() {
        Command::Build(args) => build(&args),
        Command::PrepareRoot(args) => prepare_root(&args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("adt-xen-image: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The real host, or a dry run of it.
fn host(spec: &Spec, dry_run: bool) -> Box<dyn Host> {
    let real = RealHost {
        tools: Toolbox::new(&spec.tools),
    };
    if dry_run {
        Box::new(DryRun { real })
    } else {
        Box::new(real)
    }
}

fn require_root() -> Result<()> {
    match host::effective_uid() {
        Some(0) => Ok(()),
        _ => Err(Error::NotRoot),
    }
}

fn build(args: &BuildArgs) -> Result<()> {
    let spec = Spec::load(&args.config)?;
    require_root()?;
    let host = host(&spec, args.dry_run);
    let options = Options {
        create_volumes: args.create_volumes,
        refill_origin: args.refill_origin,
        privd_config: args.privd_config.clone(),
    };
    Build::new(&spec, host.as_ref(), &options).run()
}

fn prepare_root(args: &PrepareRootArgs) -> Result<()> {
    let spec = Spec::load(&args.config)?;
    require_root()?;
    let host = host(&spec, args.dry_run);
    let tools: &[&str] = match spec.root.source() {
        spec::Source::Debootstrap(_) => &["debootstrap", "mount", "umount", "chroot"],
        spec::Source::Image(_) => &[],
    };
    if let Some(tool) = tools.iter().find(|t| host.which(t).is_none()) {
        return Err(Error::ToolMissing {
            tool: (*tool).into(),
        });
    }
    root::prepare_root(&spec, &args.dir, host.as_ref())?;
    if !args.dry_run {
        println!("adt-xen-image: {} is a testbed root", args.dir.display());
    }
    Ok(())
}
