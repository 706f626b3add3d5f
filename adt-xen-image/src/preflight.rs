//! Step 0, the preconditions: the tools exist, this is a working Xen dom0
//! with the spec's bridge, the input files are there, and no testbed of
//! the image is in use (its domain or snapshot would be clobbered).
//!
//! Not for: volumes (`volumes`) or whether we are root (`main`).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::build::Build;
use crate::error::{Error, Result};
use crate::host::timeout;
use crate::spec::Source;

/// The tools a build of this spec runs (pvcreate and vgcreate only when it
/// has to make the volume group; udevadm when it is there).
pub fn required_tools(source: Source) -> Vec<&'static str> {
    let mut tools = vec![
        "xl", "dmsetup", "lvs", "vgs", "lvcreate", "blockdev", "mount", "umount", "sync", "ssh",
        "ip", "dd",
    ];
    match source {
        Source::Image(_) => tools.extend(["e2image", "dumpe2fs"]),
        Source::Debootstrap(_) => tools.extend(["debootstrap", "mkfs.ext4", "chroot"]),
    }
    tools
}

pub fn check(b: &Build) -> Result<()> {
    for tool in required_tools(b.spec.root.source()) {
        if b.host.which(tool).is_none() {
            return Err(Error::ToolMissing { tool: tool.into() });
        }
    }
    let xl = b.host.query(&["xl", "info"], timeout::QUICK)?;
    if !xl.ok {
        return Err(Error::NoXen {
            reason: xl.reason(),
        });
    }
    let bridge = &b.spec.domain.bridge;
    if !b
        .host
        .query(&["ip", "link", "show", bridge], timeout::QUICK)?
        .ok
    {
        return Err(Error::NoBridge {
            bridge: bridge.clone(),
        });
    }
    for slot in 0..b.spec.slots {
        check_slot_free(b, slot)?;
    }
    check_inputs(b)
}

/// Neither the slot's domain nor its snapshot may exist.
fn check_slot_free(b: &Build, slot: usize) -> Result<()> {
    let name = b.layout.testbed(slot);
    if b.host.query(&["xl", "domid", &name], timeout::QUICK)?.ok {
        return Err(Error::InUse {
            what: "domain",
            fix: format!("xl destroy {name}"),
            name,
        });
    }
    if b.host
        .query(&["dmsetup", "info", &name], timeout::QUICK)?
        .ok
    {
        return Err(Error::InUse {
            what: "snapshot",
            fix: format!("dmsetup remove {name}"),
            name,
        });
    }
    Ok(())
}

fn check_inputs(b: &Build) -> Result<()> {
    if let Source::Image(path) = b.spec.root.source() {
        let usable =
            std::fs::metadata(path).is_ok_and(|m| m.is_file() || m.file_type().is_block_device());
        if !usable {
            return Err(Error::Missing {
                what: "source image (root.from_image: a file or block device)",
                path: path.to_owned(),
            });
        }
    }
    let files: [(&'static str, &Path); 4] = [
        ("domU kernel (domain.kernel)", &b.spec.domain.kernel),
        ("domU ramdisk (domain.ramdisk)", &b.spec.domain.ramdisk),
        ("ssh private key (ssh.key)", &b.spec.ssh.key),
        (
            "public key (root.authorized_key)",
            &b.spec.root.authorized_key,
        ),
    ];
    for (what, path) in files {
        if !path.is_file() {
            return Err(Error::Missing {
                what,
                path: path.to_owned(),
            });
        }
    }
    Ok(())
}
