//! Step 1, the volumes: the origin LV and one COW LV per slot in the
//! spec's volume group. What is missing is created only with
//! --create-volumes, and then only after every check passed; otherwise the
//! build is refused before anything is created.
//!
//! Not for: what is in the origin (`origin`).

use crate::build::Build;
use crate::error::{Error, Result};
use crate::host::{query_ok, run_ok, timeout};

/// What the volume step found or made.
#[derive(Debug, Clone, Copy)]
pub struct Volumes {
    /// The origin was created just now, so it holds nothing yet.
    pub origin_created: bool,
    /// The origin's size in 512-byte sectors; `None` only in a dry run
    /// where the origin does not exist yet.
    pub origin_sectors: Option<u64>,
}

/// One volume to have: its LV name and what it is for (for messages).
struct Wanted {
    lv: String,
    what: String,
    size: String,
}

pub fn ensure(b: &Build, source_bytes: Option<u64>) -> Result<Volumes> {
    let wanted = wanted(b, source_bytes)?;
    let vg_exists = b
        .host
        .query(
            &["vgs", "--noheadings", "-o", "vg_name", b.layout.vg()],
            timeout::QUICK,
        )?
        .ok;
    let mut missing = Vec::new();
    for w in &wanted {
        if !vg_exists || !lv_exists(b, &w.lv)? {
            missing.push(w);
        }
    }
    if !vg_exists {
        make_volume_group(b)?;
    }
    if let Some(first) = missing.first() {
        if !b.options.create_volumes {
            return Err(Error::NoVolume {
                what: first.what.clone(),
                path: b.layout.lv_path(&first.lv),
                create: format!(
                    "lvcreate -L {} -n {} {}",
                    first.size,
                    first.lv,
                    b.layout.vg()
                ),
            });
        }
    }
    for w in &missing {
        b.step(&format!(
            "creating {} {} ({})",
            w.what,
            b.layout.lv_path(&w.lv),
            w.size
        ));
        run_ok(
            b.host,
            &[
                "lvcreate",
                "-q",
                "-y",
                "-W",
                "y",
                "-Z",
                "n",
                "-L",
                &w.size,
                "-n",
                &w.lv,
                b.layout.vg(),
            ],
            timeout::QUICK,
        )?;
    }
    if !missing.is_empty() && b.host.which("udevadm").is_some() {
        // let udev make /dev/VG/LV before anything opens it
        let _ = b
            .host
            .run(&["udevadm", "settle", "-t", "30"], timeout::QUICK);
    }
    check_cows_are_not_the_origin(b)?;
    let origin_created = missing.iter().any(|w| w.lv == b.layout.origin_lv());
    let origin_sectors = origin_size(b, "--getsz", origin_created)?;
    if let (Some(source), Some(bytes)) =
        (source_bytes, origin_size(b, "--getsize64", origin_created)?)
    {
        if bytes < source {
            return Err(Error::OriginTooSmall {
                origin: b.layout.origin_dev(),
                bytes,
                source_path: b.spec.root.from_image.clone().unwrap_or_default(),
                source_bytes: source,
            });
        }
    }
    Ok(Volumes {
        origin_created,
        origin_sectors,
    })
}

/// The origin first, then every slot's COW.
fn wanted(b: &Build, source_bytes: Option<u64>) -> Result<Vec<Wanted>> {
    let origin_size = match (&b.spec.origin_size, source_bytes) {
        (Some(size), _) => size.clone(),
        (None, Some(bytes)) => format!("{bytes}b"),
        (None, None) => String::from("(origin_size)"),
    };
    let mut wanted = vec![Wanted {
        lv: b.layout.origin_lv(),
        what: "origin volume".into(),
        size: origin_size,
    }];
    for slot in 0..b.spec.slots {
        let lv = b.layout.cow_lv(slot);
        if lv == b.layout.origin_lv() {
            return Err(Error::CowIsOrigin {
                slot,
                cow: b.layout.cow_dev(slot),
                origin: b.layout.origin_dev(),
            });
        }
        wanted.push(Wanted {
            lv,
            what: format!("slot {slot}'s COW volume"),
            size: b.spec.cow_size.clone(),
        });
    }
    Ok(wanted)
}

fn lv_exists(b: &Build, lv: &str) -> Result<bool> {
    let name = format!("{}/{lv}", b.layout.vg());
    Ok(b.host
        .query(
            &["lvs", "--noheadings", "-o", "lv_name", &name],
            timeout::QUICK,
        )?
        .ok)
}

/// The volume group is made only with --create-volumes and a
/// physical_volume in the spec.
fn make_volume_group(b: &Build) -> Result<()> {
    let vg = b.layout.vg();
    let pv = match (&b.spec.physical_volume, b.options.create_volumes) {
        (Some(pv), true) => pv.to_string_lossy().into_owned(),
        (Some(pv), false) => {
            return Err(Error::NoVolumeGroup {
                vg: vg.into(),
                fix: format!("pass --create-volumes to make it on {}", pv.display()),
            })
        }
        (None, _) => return Err(Error::NoVolumeGroup {
            vg: vg.into(),
            fix:
                "create it (vgcreate), or set physical_volume in the spec and pass --create-volumes"
                    .into(),
        }),
    };
    for tool in ["pvcreate", "vgcreate"] {
        if b.host.which(tool).is_none() {
            return Err(Error::ToolMissing { tool: tool.into() });
        }
    }
    b.step(&format!("creating volume group {vg} on {pv}"));
    run_ok(b.host, &["pvcreate", "-q", "-y", &pv], timeout::QUICK)?;
    run_ok(b.host, &["vgcreate", "-q", vg, &pv], timeout::QUICK).map(drop)
}

/// Two names for one device would make a slot write into the origin.
fn check_cows_are_not_the_origin(b: &Build) -> Result<()> {
    let Ok(origin) = std::fs::canonicalize(b.layout.origin_dev()) else {
        return Ok(());
    };
    for slot in 0..b.spec.slots {
        if std::fs::canonicalize(b.layout.cow_dev(slot)).is_ok_and(|cow| cow == origin) {
            return Err(Error::CowIsOrigin {
                slot,
                cow: b.layout.cow_dev(slot),
                origin: b.layout.origin_dev(),
            });
        }
    }
    Ok(())
}

/// `blockdev FLAG ORIGIN` as a number; `None` in a dry run that would
/// have created the origin.
fn origin_size(b: &Build, flag: &str, created: bool) -> Result<Option<u64>> {
    if created && b.host.dry_run() {
        return Ok(None);
    }
    let origin = b.layout.origin_dev();
    let out = query_ok(b.host, &["blockdev", flag, &origin], timeout::QUICK)?;
    out.trim().parse().map(Some).map_err(|_| Error::Command {
        command: format!("blockdev {flag} {origin}"),
        reason: format!("printed {:?}, not a number", out.trim()),
    })
}
