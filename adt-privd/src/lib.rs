//! The shared part of adt-privd: the D-Bus names, the error names, the
//! record types, the configuration format (read by the daemon, written by
//! adt-xen-image) and the client proxy, so that the daemon, adt-runner,
//! adt-xen-image and the system tests agree on one definition of each.
//!
//! Not for: anything that touches devices or domains; that lives in the
//! daemon's private modules (`engine`, `host`, `ledger`).

pub mod cli;
pub mod config;
pub mod names;
pub mod privileges;
pub mod proxy;

pub use names::*;
pub use proxy::Xen1Proxy;

/// One testbed as `ListTestbeds` reports it.
///
/// D-Bus signature `(ssssu)`: name, image, state, address, owner uid.
/// `state` is `snapshot` (snapshot only) or `running` (domain resumed on it).
pub type TestbedRecord = (String, String, String, String, u32);
