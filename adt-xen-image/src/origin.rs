//! Steps 2 and 3, the origin's contents: fill it from the spec's source
//! and configure it as a testbed root, each recorded in a stamp in the
//! state directory so that an unchanged origin is left alone. Rewriting
//! the origin invalidates every checkpoint, so it is refused while the
//! origin is open (a snapshot or domain uses it) and deletes them all.
//!
//! Not for: what a testbed root contains (`root`).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Instant;

use crate::build::Build;
use crate::error::{io, Error, Result};
use crate::files::{self, fnv64};
use crate::host::{query_ok, run_ok, timeout};
use crate::root::{self, RootConfig};
use crate::spec::Source;

/// What the origin should hold: its stamp, and the source's size in
/// bytes when it is an image.
#[derive(Debug, Clone)]
pub struct SourceId {
    pub stamp: String,
    pub bytes: Option<u64>,
}

/// Identify the source without reading it: for an image, its ext4 UUID,
/// creation time and size (as the shell model's stamp); for debootstrap,
/// the parameters that decide what it installs.
pub fn describe_source(b: &Build) -> Result<SourceId> {
    match b.spec.root.source() {
        Source::Image(path) => {
            let bytes = source_bytes(b, path)?;
            let shown = path.to_string_lossy();
            let header = query_ok(b.host, &["dumpe2fs", "-h", &shown], timeout::QUICK)?;
            let field = |name: &str| {
                header
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim_start_matches(':').trim().to_owned())
                    .unwrap_or_default()
            };
            let uuid = field("Filesystem UUID");
            if uuid.is_empty() {
                return Err(Error::Command {
                    command: format!("dumpe2fs -h {shown}"),
                    reason: "no filesystem UUID: is the source an ext4 image?".into(),
                });
            }
            let created = field("Filesystem created");
            Ok(SourceId {
                stamp: format!("{uuid} {created} {bytes}"),
                bytes: Some(bytes),
            })
        }
        Source::Debootstrap(d) => {
            let mut include: Vec<&str> = d.include.iter().map(String::as_str).collect();
            include.extend(root::REQUIRED_PACKAGES);
            include.sort_unstable();
            include.dedup();
            let stamp = format!(
                "debootstrap suite={} mirror={} include={} deb_src={} components={}",
                d.suite,
                d.mirror,
                include.join(","),
                d.deb_src,
                d.components.join(",")
            );
            Ok(SourceId { stamp, bytes: None })
        }
    }
}

fn source_bytes(b: &Build, path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(io("examine", path))?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let shown = path.to_string_lossy();
    let out = query_ok(b.host, &["blockdev", "--getsize64", &shown], timeout::QUICK)?;
    out.trim().parse().map_err(|_| Error::Command {
        command: format!("blockdev --getsize64 {shown}"),
        reason: format!("printed {:?}, not a number", out.trim()),
    })
}

/// Step 2. Returns whether the origin was (re)filled.
pub fn fill_if_needed(b: &Build, source: &SourceId, origin_created: bool) -> Result<bool> {
    let current = files::read_stamp(&b.layout.stamp("origin"))?;
    let current_ok = current.as_deref() == Some(source.stamp.as_str());
    if current_ok && !origin_created && !b.options.refill_origin {
        b.step(&format!("origin {} is current", b.layout.origin_dev()));
        return Ok(false);
    }
    prepare_rewrite(b)?;
    files::remove(b.host, &b.layout.stamp("origin"))?;
    let origin = b.layout.origin_dev();
    let started = Instant::now();
    match b.spec.root.source() {
        Source::Image(path) => {
            b.step(&format!("filling {origin} from {}", path.display()));
            let path = path.to_string_lossy();
            // e2image -ra copies only the blocks the filesystem uses
            run_ok(b.host, &["e2image", "-ra", &path, &origin], timeout::FILL)?;
        }
        Source::Debootstrap(d) => {
            b.step(&format!(
                "filling {origin} with debootstrap of {} from {}",
                d.suite, d.mirror
            ));
            run_ok(
                b.host,
                &["mkfs.ext4", "-q", "-F", "-L", "testbed-root", &origin],
                timeout::FILL,
            )?;
            with_origin_mounted(b, |dir| root::debootstrap(dir, d, b.host))?;
        }
    }
    run_ok(b.host, &["sync"], timeout::FILL)?;
    b.figure("image_origin_fill", started);
    files::write_stamp(b.host, &b.layout.stamp("origin"), &source.stamp)?;
    Ok(true)
}

/// Step 3. Returns whether the origin's root was (re)configured.
pub fn configure_if_needed(b: &Build, authorized_key: &str, filled: bool) -> Result<bool> {
    let config = RootConfig::new(b.spec, authorized_key);
    let origin_stamp = files::read_stamp(&b.layout.stamp("origin"))?.unwrap_or_default();
    let want = format!(
        "root {}",
        fnv64(&[config.hash().as_bytes(), origin_stamp.as_bytes()])
    );
    let current = files::read_stamp(&b.layout.stamp("root"))?;
    if !filled && current.as_deref() == Some(want.as_str()) {
        b.step("the origin's testbed configuration is current");
        return Ok(false);
    }
    if !filled {
        prepare_rewrite(b)?;
    }
    files::remove(b.host, &b.layout.stamp("root"))?;
    b.step(&format!(
        "configuring the testbed root in {}",
        b.layout.origin_dev()
    ));
    with_origin_mounted(b, |dir| root::configure_root(dir, &config, b.host))?;
    files::write_stamp(b.host, &b.layout.stamp("root"), &want)?;
    Ok(true)
}

/// Before the origin is written: nothing may use it, and every checkpoint
/// made from its old contents goes (with the stamps that vouch for them).
fn prepare_rewrite(b: &Build) -> Result<()> {
    release_own_mount(b)?;
    let open = open_count(b)?;
    if open > 0 {
        return Err(Error::OriginOpen {
            origin: b.layout.origin_dev(),
            open,
        });
    }
    delete_checkpoints(b)?;
    files::remove(b.host, &b.layout.stamp("root"))
}

/// `dmsetup info -c --noheadings -o open VG-LV`; a device dmsetup does not
/// know is not open (as in the shell model).
pub fn open_count(b: &Build) -> Result<u32> {
    let name = b.layout.dm_name(&b.layout.origin_lv());
    let out = b.host.query(
        &["dmsetup", "info", "-c", "--noheadings", "-o", "open", &name],
        timeout::QUICK,
    )?;
    if !out.ok {
        return Ok(0);
    }
    out.stdout.trim().parse().map_err(|_| Error::Command {
        command: format!("dmsetup info -c --noheadings -o open {name}"),
        reason: format!("printed {:?}, not a count", out.stdout.trim()),
    })
}

/// Delete every checkpoint of the image (also of slots no longer in the spec).
pub fn delete_checkpoints(b: &Build) -> Result<()> {
    let dir = &b.spec.state_dir;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".checkpoint") || name.ends_with(".checkpoint.new") {
            files::remove(b.host, &entry.path())?;
        }
    }
    Ok(())
}

/// A mount of ours left by an interrupted run keeps the origin open.
fn release_own_mount(b: &Build) -> Result<()> {
    let mount_point = b.layout.mount_point();
    if is_mounted(&mount_point) {
        let shown = mount_point.to_string_lossy();
        run_ok(b.host, &["umount", "-R", &shown], timeout::QUICK)?;
    }
    Ok(())
}

fn is_mounted(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(wanted.as_str()))
}

/// Mount the origin read-write on the state directory's `mnt`, run `f` on
/// it, and unmount whatever `f` returned.
fn with_origin_mounted(b: &Build, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = b.layout.mount_point();
    release_own_mount(b)?;
    files::create_dir(b.host, &dir)?;
    let shown = dir.to_string_lossy().into_owned();
    let origin = b.layout.origin_dev();
    run_ok(
        b.host,
        &["mount", "-t", "ext4", &origin, &shown],
        timeout::QUICK,
    )?;
    let done = f(&dir);
    let synced = run_ok(b.host, &["sync"], timeout::FILL);
    let unmounted = run_ok(b.host, &["umount", &shown], timeout::QUICK);
    done?;
    synced?;
    unmounted.map(drop)
}
