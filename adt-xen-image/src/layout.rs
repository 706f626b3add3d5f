//! Every name the image is made of, derived from the spec in one place:
//! volumes, device-mapper names, domain names, state files, addresses.
//! adt-privd's configuration and the domain configs are written from here,
//! so the tool, the daemon and the runner agree.
//!
//! Not for: checking that any of it exists (the step modules).

use std::path::{Path, PathBuf};

use adt_privd::names::resource_name;

use crate::spec::Spec;

/// The testbed's init (a testbed is a real machine: systemd), named on
/// the kernel command line with `init=`.
pub const TESTBED_INIT: &str = "/lib/systemd/systemd";

pub struct Layout<'a> {
    pub spec: &'a Spec,
}

impl Layout<'_> {
    pub fn vg(&self) -> &str {
        &self.spec.volume_group
    }

    pub fn origin_lv(&self) -> String {
        format!("{}-origin", self.spec.image)
    }

    pub fn cow_lv(&self, slot: usize) -> String {
        format!("{}-cow{slot}", self.spec.image)
    }

    /// `/dev/VG/LV`, the path LVM's udev rules make.
    pub fn lv_path(&self, lv: &str) -> String {
        format!("/dev/{}/{lv}", self.vg())
    }

    pub fn origin_dev(&self) -> String {
        self.lv_path(&self.origin_lv())
    }

    pub fn cow_dev(&self, slot: usize) -> String {
        self.lv_path(&self.cow_lv(slot))
    }

    /// The device-mapper name of an LV: `VG-LV` with every `-` inside
    /// either name doubled.
    pub fn dm_name(&self, lv: &str) -> String {
        format!("{}-{}", self.vg().replace('-', "--"), lv.replace('-', "--"))
    }

    /// Snapshot and domain name of a slot (`adt-IMAGE-N`).
    pub fn testbed(&self, slot: usize) -> String {
        resource_name(&self.spec.image, slot)
    }

    pub fn snapshot_dev(&self, slot: usize) -> String {
        format!("/dev/mapper/{}", self.testbed(slot))
    }

    pub fn state(&self, file: &str) -> PathBuf {
        self.spec.state_dir.join(file)
    }

    pub fn domain_config(&self, slot: usize) -> PathBuf {
        self.state(&format!("{slot}.cfg"))
    }

    pub fn checkpoint(&self, slot: usize) -> PathBuf {
        self.state(&format!("{slot}.checkpoint"))
    }

    /// What was put into the origin (`origin`) and how it was configured (`root`).
    pub fn stamp(&self, which: &str) -> PathBuf {
        self.state(&format!("{which}.stamp"))
    }

    pub fn kernel(&self) -> PathBuf {
        self.state("vmlinux")
    }

    pub fn ramdisk(&self) -> PathBuf {
        self.state("initrd")
    }

    /// Where the origin is mounted while it is filled or configured.
    pub fn mount_point(&self) -> PathBuf {
        self.state("mnt")
    }

    pub fn address(&self, slot: usize) -> String {
        self.spec.slot_address(slot).to_string()
    }

    /// `mac_prefix:XX`, XX the last octet of the slot's address.
    pub fn mac(&self, slot: usize) -> String {
        let last = self.spec.slot_address(slot).octets()[3];
        format!("{}:{last:02x}", self.spec.network.mac_prefix)
    }

    /// The xen console log of a slot's domain, if xenconsoled keeps one.
    pub fn console_log(&self, slot: usize) -> PathBuf {
        Path::new("/var/log/xen/console").join(format!("guest-{}.log", self.testbed(slot)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    #[test]
    fn names_follow_the_shell_model() {
        let mut s = spec();
        s.volume_group = "my-vg".into();
        let l = Layout { spec: &s };
        assert_eq!(l.origin_dev(), "/dev/my-vg/bookworm-origin");
        assert_eq!(l.cow_dev(1), "/dev/my-vg/bookworm-cow1");
        assert_eq!(l.dm_name(&l.origin_lv()), "my--vg-bookworm--origin");
        assert_eq!(l.testbed(1), "adt-bookworm-1");
        assert_eq!(l.snapshot_dev(0), "/dev/mapper/adt-bookworm-0");
        assert_eq!(l.address(1), "10.99.0.11");
        assert_eq!(l.mac(1), "00:16:3e:99:00:0b");
    }
}
