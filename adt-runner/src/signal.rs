//! Interruption of `adt-runner run`: SIGTERM, SIGINT, SIGQUIT and SIGHUP
//! are only recorded by the handler; the run notices them between reads of
//! the testbed, stops the testbed (a Xen domain and its snapshot are given
//! back, the scratch directory removed) and then dies of the same signal,
//! as autopkgtest does.
//!
//! Not for: the long-running service's signal policy (finish the current
//! test, re-read the configuration), which belongs to the service loop.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};

static PENDING: AtomicI32 = AtomicI32::new(0);

const HANDLED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
];

extern "C" fn record(sig: std::ffi::c_int) {
    PENDING.store(sig, Ordering::SeqCst);
}

/// Installs the recording handler.
pub fn install() {
    let action = SigAction::new(
        SigHandler::Handler(record),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in HANDLED {
        // SAFETY: the handler only stores to an atomic.
        if let Err(e) = unsafe { signal::sigaction(s, &action) } {
            tracing::warn!(signal = %s, error = %e, "cannot install signal handler");
        }
    }
}

/// The signal received, if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The signal received, if any, now acknowledged: cleanup after it can
/// talk to the testbed again.
pub fn take() -> Option<i32> {
    match PENDING.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Dies of `sig` (default action restored first).
pub fn die_of(sig: i32) -> ! {
    if let Ok(s) = Signal::try_from(sig) {
        // SAFETY: restoring the default disposition.
        let _ = unsafe { signal::signal(s, SigHandler::SigDfl) };
        let _ = signal::raise(s);
    }
    std::process::exit(128 + sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_recorded_not_fatal() {
        install();
        assert_eq!(pending(), None);
        signal::raise(Signal::SIGHUP).unwrap();
        assert_eq!(pending(), Some(Signal::SIGHUP as i32));
        PENDING.store(0, Ordering::SeqCst);
    }
}
