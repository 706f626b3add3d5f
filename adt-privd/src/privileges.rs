//! Dropping privileges: adt-privd keeps only the capabilities that
//! device-mapper and the Xen toolstack need, clears the rest from every
//! set including the bounding set (so `dmsetup`, `xl` and xl's hotplug
//! scripts inherit no more), and sets no_new_privs.
//!
//! Capabilities are per thread: this must run before the tokio runtime
//! starts its threads.

use caps::{CapSet, Capability, CapsHashSet};

/// What dm and xl need, and why:
/// - SYS_ADMIN: device-mapper ioctls, Xen privcmd hypercalls;
/// - NET_ADMIN: xl's vif hotplug script puts the domain's interface on the bridge;
/// - MKNOD: dmsetup makes /dev/mapper nodes where udev does not;
/// - IPC_LOCK: libxc locks hypercall buffers in memory;
/// - SYS_RESOURCE: the toolstack raises memlock and file limits;
/// - DAC_OVERRIDE: tools and hotplug scripts write state files that are
///   not always root-owned (xenstore, /var/lib/xen, lock files).
pub const KEPT: [Capability; 6] = [
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_MKNOD,
    Capability::CAP_IPC_LOCK,
    Capability::CAP_SYS_RESOURCE,
    Capability::CAP_DAC_OVERRIDE,
];

/// The kept set as a bit mask, as /proc/PID/status prints it (CapEff).
pub fn kept_mask() -> u64 {
    KEPT.iter().fold(0, |m, c| m | c.bitmask())
}

/// Drop everything not in `KEPT`. Without CAP_SETPCAP (not root, or in a
/// test run as an ordinary user) the bounding set cannot be changed; the
/// other sets are still reduced.
pub fn drop_capabilities() -> Result<(), String> {
    let kept: CapsHashSet = KEPT.iter().copied().collect();
    let bounding = caps::read(None, CapSet::Bounding).map_err(|e| e.to_string())?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in bounding.difference(&kept) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|e| format!("cannot drop {cap} from the bounding set: {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| e.to_string())?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| e.to_string())?;
    let keep_now: CapsHashSet = permitted.intersection(&kept).copied().collect();
    // Effective before permitted: the effective set must stay a subset.
    caps::set(None, CapSet::Effective, &keep_now).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Permitted, &keep_now).map_err(|e| e.to_string())?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))
}

/// The names of the kept capabilities, as systemd's CapabilityBoundingSet=
/// spells them.
pub fn kept_names() -> Vec<String> {
    KEPT.iter().map(|c| c.to_string()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mask_has_one_bit_per_kept_capability() {
        assert_eq!(super::kept_mask().count_ones() as usize, super::KEPT.len());
        assert!(super::kept_names().contains(&"CAP_SYS_ADMIN".to_string()));
    }
}
