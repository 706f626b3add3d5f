//! The build: steps 0 to 5 in order (preconditions, volumes, origin
//! contents, root configuration, slots, adt-privd's configuration), each
//! idempotent, so a rerun after an interruption resumes where it stopped.
//!
//! Not for: the steps themselves (`preflight`, `volumes`, `origin`,
//! `slots`, `privd`).

use std::path::PathBuf;
use std::time::Instant;

use crate::error::Result;
use crate::files;
use crate::host::Host;
use crate::layout::Layout;
use crate::spec::Spec;
use crate::{origin, preflight, privd, root, slots, volumes};

/// The command-line choices that change what a build may do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub create_volumes: bool,
    pub refill_origin: bool,
    pub privd_config: PathBuf,
}

/// Everything a step needs: the spec, its names, the host, the options.
pub struct Build<'a> {
    pub spec: &'a Spec,
    pub layout: Layout<'a>,
    pub host: &'a dyn Host,
    pub options: &'a Options,
}

impl<'a> Build<'a> {
    pub fn new(spec: &'a Spec, host: &'a dyn Host, options: &'a Options) -> Build<'a> {
        Build {
            spec,
            layout: Layout { spec },
            host,
            options,
        }
    }

    /// A progress line on stdout.
    pub fn step(&self, message: &str) {
        println!("adt-xen-image: {message}");
    }

    /// A `figure NAME SECONDS s` line (the Xen lab reads them); none in a dry run.
    pub fn figure(&self, name: &str, since: Instant) {
        if !self.host.dry_run() {
            println!("figure {name} {:.2} s", since.elapsed().as_secs_f64());
        }
    }

    pub fn run(&self) -> Result<()> {
        files::create_dir(self.host, &self.spec.state_dir)?;
        // Two builds of one image would fight over its volumes and slots
        // (and the second's preflight would take the first's for testbeds).
        let _lock = files::lock_dir(
            self.host,
            &self.spec.state_dir,
            false,
            "another adt-xen-image build of this image",
        )?;
        preflight::check(self)?;
        let key = root::read_authorized_key(&self.spec.root.authorized_key)?;
        let source = origin::describe_source(self)?;
        let volumes = volumes::ensure(self, source.bytes)?;
        let filled = origin::fill_if_needed(self, &source, volumes.origin_created)?;
        let configured = origin::configure_if_needed(self, &key, filled)?;
        slots::make_all(self, volumes.origin_sectors, filled || configured)?;
        privd::write(self)?;
        self.step(&format!("image {} is ready", self.spec.image));
        Ok(())
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
