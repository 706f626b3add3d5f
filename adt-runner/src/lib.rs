//! adt-runner: the unprivileged runner of autopkgtest-xen. It tests a
//! source package's DEP-8 tests in a testbed reached over ssh (an existing
//! host, or a Xen domain obtained from adt-privd) and writes what Debian's
//! autopkgtest writes: verdicts, summary, output directory, exit code.
//!
//! The modules follow the pipeline: `cli` → `pipeline` → `testbed`/`xen`
//! (life cycle) and `ssh` (transport) → `session` (the opened testbed) →
//! `source` (fetch, unpack, build) → `deb822`/`dep8`/`autodep8`/`deps` (control data)
//! → `apt`/`binaries` (installation) → `run` (one test) → `verdict` →
//! `output`.

pub mod apt;
pub mod aptconf;
pub mod autodep8;
pub mod binaries;
pub mod cli;
pub mod deb822;
pub mod dep8;
pub mod deps;
pub mod error;
pub mod history;
pub mod loopconfig;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod results;
pub mod run;
pub mod select;
pub mod service;
pub mod session;
pub mod signal;
pub mod source;
pub mod ssh;
pub mod testbed;
pub mod verdict;
pub mod web;
pub mod xen;
