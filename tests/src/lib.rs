//! System-test harness of autopkgtest-xen: starts real processes (a
//! dbus-daemon with the project's bus policy, polkitd with the project's
//! action and rules, adt-privd with stand-in tools, clients as real
//! unprivileged users) and ends them by pid.
//!
//! Not for: unit tests (each crate has its own) or the Xen lab
//! (tests/xenlab/), which runs the real dmsetup and xl.

pub mod bins;
pub mod bus;
pub mod client;
pub mod polkit;
pub mod privd;
pub mod testbed;
pub mod users;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The top of the source tree (the workspace root).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Poll `check` until it is true or `limit` passes; returns the time taken.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Send `signal` to `pid` and reap it if it is our child (via `child`).
pub fn kill(child: &mut std::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, signal);
    let _ = child.wait();
}

/// A test that cannot run on this machine calls this and returns. Under CI
/// (`CI` set) it fails instead: CI installs and runs everything the tests
/// need, so a skip there would hide a test that proves nothing. Elsewhere
/// it says why; such a test counts as not done.
pub fn skip(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("this test cannot run here, and CI does not allow skips: {why}");
    }
    eprintln!("SKIPPED (not done): {why}");
}
