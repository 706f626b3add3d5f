//! The one error type of adt-xen-image. Every variant says what went
//! wrong, where, and, for a refusal, what the admin can do about it.
//!
//! Not for: deciding what to refuse (the step modules do that).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A spec that does not parse or does not make sense; `key` is the
    /// dotted key (e.g. `domain.memory`) the message is about.
    #[error("{path}: {key}: {message}")]
    Spec {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("must run as root (it creates volumes, mounts the origin and starts domains)")]
    NotRoot,
    #[error("{tool} not found (not on PATH, or the spec's [tools] path is no executable): install it, or set \"{tool}\" = \"/absolute/path\" in the spec's [tools]")]
    ToolMissing { tool: String },
    #[error("`xl info` fails ({reason}): is this a Xen dom0 with xenstored running?")]
    NoXen { reason: String },
    #[error("bridge {bridge} does not exist (`ip link show {bridge}` fails): create it or fix domain.bridge")]
    NoBridge { bridge: String },
    #[error("{what} {name} exists: a testbed in use? destroy it first ({fix})")]
    InUse {
        what: &'static str,
        name: String,
        fix: String,
    },
    #[error("{what} not found: {path}")]
    Missing { what: &'static str, path: PathBuf },
    #[error("volume group {vg} does not exist: {fix}")]
    NoVolumeGroup { vg: String, fix: String },
    #[error("{what} {path} does not exist (refusing to build without it): pass --create-volumes, or create it ({create})")]
    NoVolume {
        what: String,
        path: String,
        create: String,
    },
    #[error(
        "slot {slot}: its COW volume {cow} is the origin {origin}: a dangerous layout, refusing"
    )]
    CowIsOrigin {
        slot: usize,
        cow: String,
        origin: String,
    },
    #[error("origin {origin} ({bytes} bytes) is smaller than the source {source_path} ({source_bytes} bytes): grow it with lvextend")]
    OriginTooSmall {
        origin: String,
        bytes: u64,
        source_path: PathBuf,
        source_bytes: u64,
    },
    #[error("origin {origin} is open ({open} users): an origin in use by a snapshot or domain is not rewritten; remove its testbeds first")]
    OriginOpen { origin: String, open: u32 },
    #[error("{command}: {reason}")]
    Command { command: String, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not empty: debootstrap only into an empty or new directory")]
    NotEmpty { path: PathBuf },
    #[error("the domain is gone before ssh came up (crashed or shut down: see its console)")]
    DomainGone,
    #[error("no ssh to root@{address} after {seconds} s")]
    NoSsh { address: String, seconds: u64 },
    #[error("the testbed's root is not mounted read-only: its checkpoint would not match the origin (does the ramdisk mount root `ro`?)")]
    RootWritable,
    #[error("slot {slot} ({name}): {source}")]
    Slot {
        slot: usize,
        name: String,
        source: Box<Error>,
    },
    #[error("{path} is locked: {what} is running; wait for it to end")]
    Busy { path: PathBuf, what: &'static str },
    #[error("{path}: {message}")]
    PrivdConfig { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// An `Io` error for `action` (a verb: "write", "remove", ...) on `path`.
pub fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
