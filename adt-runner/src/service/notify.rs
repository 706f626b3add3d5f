//! Talking to the service manager and being talked to: sd_notify
//! datagrams to $NOTIFY_SOCKET (READY=1, STATUS=..., RELOADING=1,
//! STOPPING=1), and the signals the loop obeys (SIGTERM/SIGINT: stop after
//! the current package, a second one: abort; SIGHUP: reload), recorded by
//! an async-signal-safe handler in atomics that the loop polls.
//!
//! Not for: deciding what to do about them (`service`).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static STOPS: AtomicUsize = AtomicUsize::new(0);
static LAST_STOP: AtomicI32 = AtomicI32::new(0);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: i32) {
    if sig == Signal::SIGHUP as i32 {
        RELOAD.store(true, Ordering::SeqCst);
    } else {
        LAST_STOP.store(sig, Ordering::SeqCst);
        STOPS.fetch_add(1, Ordering::SeqCst);
    }
}

/// Installs the handlers for SIGTERM, SIGINT and SIGHUP.
pub fn install() -> Result<(), String> {
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler only stores to atomics.
        unsafe { sigaction(sig, &act) }.map_err(|e| format!("cannot handle {sig}: {e}"))?;
    }
    Ok(())
}

/// How many stop signals (SIGTERM, SIGINT) arrived.
pub fn stops() -> usize {
    STOPS.load(Ordering::SeqCst)
}

/// The last stop signal's number.
pub fn last_stop() -> i32 {
    LAST_STOP.load(Ordering::SeqCst)
}

/// Whether a SIGHUP arrived since the last call.
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// Whether a SIGHUP is waiting to be taken.
pub fn reload_pending() -> bool {
    RELOAD.load(Ordering::SeqCst)
}

/// Sends `state` (e.g. `READY=1\nSTATUS=idle`) to the service manager
/// when it listens ($NOTIFY_SOCKET; `@` names an abstract socket).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let send = || -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &path)?;
        }
        Ok(())
    };
    if let Err(e) = send() {
        tracing::warn!(socket = ?path, error = %e, "cannot notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        // The variable is read per call; other tests of this binary do not use it.
        std::env::set_var("NOTIFY_SOCKET", &p);
        notify("READY=1\nSTATUS=idle");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=idle");
    }
}
