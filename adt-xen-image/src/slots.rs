//! Step 4, the slots: the kernel copies, each slot's xl domain config, and
//! its checkpoint, made by booting the domain once on a fresh snapshot of
//! the origin, waiting for ssh and `xl save`-ing it. A slot whose config
//! and checkpoint are current is left alone; a failed slot leaves no
//! domain and no snapshot behind.
//!
//! Not for: restoring checkpoints (adt-privd's job).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::build::Build;
use crate::error::{Error, Result};
use crate::files;
use crate::host::{run_ok, timeout};
use crate::layout::{Layout, TESTBED_INIT};

/// The xl config of a slot, as the shell model's write_cfg writes it, with
/// `ro init=` so the testbed boots with the read-only root its checkpoint
/// must be taken with.
pub fn domain_config(layout: &Layout, slot: usize) -> String {
    let spec = layout.spec;
    let name = layout.testbed(slot);
    let net = &spec.network;
    let own = format!(
        "root=/dev/xvda ro init={TESTBED_INIT} adt.ip={}/{} adt.gw={} adt.dns={} adt.hostname={name}",
        layout.address(slot),
        net.prefix_len,
        net.gateway,
        net.dns
    );
    let hotplug = spec.domain.hotplug_dir.as_deref();
    let extra = match spec.domain.extra.trim() {
        "" => own,
        e => format!("{e} {own}"),
    };
    format!(
        "# adt-xen-image: slot {slot} of image {image}. adt-privd restores this domain\n\
         # with `xl restore -e` from {checkpoint} on the snapshot below.\n\
         name = \"{name}\"\n\
         type = \"pv\"\n\
         kernel = \"{kernel}\"\n\
         ramdisk = \"{ramdisk}\"\n\
         extra = \"{extra}\"\n\
         memory = {memory}\n\
         vcpus = {vcpus}\n\
         disk = ['{disk}']\n\
         vif = ['{vif}']\n\
         on_crash = \"destroy\"\n",
        image = spec.image,
        checkpoint = layout.checkpoint(slot).display(),
        kernel = layout.kernel().display(),
        ramdisk = layout.ramdisk().display(),
        memory = spec.domain.memory,
        vcpus = spec.domain.vcpus,
        disk = disk_spec(&layout.snapshot_dev(slot), hotplug),
        vif = vif_spec(&spec.domain.bridge, &layout.mac(slot), hotplug),
    )
}

/// The slot's disk: its snapshot device as xvda, through the lean block
/// script when the spec names a hotplug_dir.
fn disk_spec(device: &str, hotplug: Option<&Path>) -> String {
    match hotplug {
        None => format!("phy:{device},xvda,w"),
        // `target=` must come last: everything after it is the path.
        Some(dir) => format!(
            "format=raw,vdev=xvda,access=rw,script={}/block,target={device}",
            dir.display()
        ),
    }
}

fn vif_spec(bridge: &str, mac: &str, hotplug: Option<&Path>) -> String {
    match hotplug {
        None => format!("bridge={bridge},mac={mac}"),
        Some(dir) => format!(
            "bridge={bridge},mac={mac},script={}/vif-bridge",
            dir.display()
        ),
    }
}

/// Copy the kernel and ramdisk into the state directory when their
/// contents changed. Returns whether they did (old checkpoints then run
/// the old kernel, so they go).
pub fn install_kernel(b: &Build) -> Result<bool> {
    let mut changed = false;
    let copies = [
        (&b.spec.domain.kernel, b.layout.kernel()),
        (&b.spec.domain.ramdisk, b.layout.ramdisk()),
    ];
    for (from, to) in copies {
        let new = std::fs::read(from).map_err(|source| Error::Read {
            path: from.clone(),
            source,
        })?;
        if files::read_optional(&to)?.as_deref() != Some(new.as_slice()) {
            b.step(&format!("copying {} to {}", from.display(), to.display()));
            files::write_atomic(b.host, &to, &new, 0o644)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Every slot: config written, checkpoint made unless current.
/// `stale` says the origin changed, so no existing checkpoint counts.
pub fn make_all(b: &Build, origin_sectors: Option<u64>, stale: bool) -> Result<()> {
    let kernel_changed = install_kernel(b)?;
    if kernel_changed && !stale {
        crate::origin::delete_checkpoints(b)?;
    }
    let sectors = origin_sectors.unwrap_or(0);
    for slot in 0..b.spec.slots {
        let config = domain_config(&b.layout, slot);
        let path = b.layout.domain_config(slot);
        let checkpoint = b.layout.checkpoint(slot);
        let config_changed = files::read_optional(&path)?.as_deref() != Some(config.as_bytes());
        if config_changed {
            files::write_atomic(b.host, &path, config.as_bytes(), 0o644)?;
            files::remove(b.host, &checkpoint)?;
        }
        let current = !stale && !kernel_changed && !config_changed && files::non_empty(&checkpoint);
        if current {
            b.step(&format!(
                "slot {slot}: checkpoint {} exists",
                checkpoint.display()
            ));
            continue;
        }
        make_checkpoint(b, slot, sectors).map_err(|e| {
            clean_up(b, slot);
            Error::Slot {
                slot,
                name: b.layout.testbed(slot),
                source: Box::new(e),
            }
        })?;
    }
    Ok(())
}

/// Boot the slot once on a fresh snapshot and save it.
fn make_checkpoint(b: &Build, slot: usize, sectors: u64) -> Result<()> {
    let l = &b.layout;
    let name = l.testbed(slot);
    let address = l.address(slot);
    let checkpoint = l.checkpoint(slot);
    let partial = checkpoint.with_extension("checkpoint.new");
    files::remove(b.host, &partial)?;
    b.step(&format!(
        "slot {slot}: booting {name} at {address} to make its checkpoint"
    ));
    // a non-persistent snapshot ignores the COW's old contents; zero its head anyway
    let cow = l.cow_dev(slot);
    run_ok(
        b.host,
        &[
            "dd",
            "if=/dev/zero",
            &format!("of={cow}"),
            "bs=4096",
            "count=1",
            "conv=notrunc",
            "status=none",
        ],
        timeout::QUICK,
    )?;
    let table = format!(
        "0 {sectors} snapshot {} {cow} n {}",
        l.origin_dev(),
        b.spec.chunk_sectors
    );
    run_ok(
        b.host,
        &["dmsetup", "create", &name, "--table", &table],
        timeout::QUICK,
    )?;
    let booted = Instant::now();
    let config = l.domain_config(slot).to_string_lossy().into_owned();
    run_ok(b.host, &["xl", "create", "-q", &config], timeout::DOMAIN)?;
    wait_ssh(b, &name, &address)?;
    b.figure(&format!("image_slot{slot}_boot_to_ssh"), booted);
    check_root_read_only(b, &address)?;
    let saved = Instant::now();
    let partial_shown = partial.to_string_lossy().into_owned();
    run_ok(
        b.host,
        &["xl", "save", &name, &partial_shown],
        timeout::SAVE,
    )?;
    if !b.host.dry_run() && !files::non_empty(&partial) {
        return Err(Error::Command {
            command: format!("xl save {name} {partial_shown}"),
            reason: "succeeded but left no checkpoint".into(),
        });
    }
    files::rename(b.host, &partial, &checkpoint)?;
    b.figure(&format!("image_slot{slot}_save"), saved);
    run_ok(
        b.host,
        &["dmsetup", "remove", "--retry", &name],
        timeout::QUICK,
    )
    .map(drop)
}

/// After a failure: no domain, no snapshot, no partial checkpoint; the
/// console's last lines for the admin.
fn clean_up(b: &Build, slot: usize) {
    let name = b.layout.testbed(slot);
    let _ = b.host.run(&["xl", "destroy", &name], timeout::DOMAIN);
    let _ = b
        .host
        .run(&["dmsetup", "remove", "--retry", &name], timeout::QUICK);
    let partial = b.layout.checkpoint(slot).with_extension("checkpoint.new");
    let _ = files::remove(b.host, &partial);
    let log = b.layout.console_log(slot);
    if let Ok(text) = std::fs::read_to_string(&log) {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("adt-xen-image: the last lines of {}:", log.display());
        for line in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  {line}");
        }
    }
}

fn ssh_argv<'a>(b: &'a Build, address: &'a str, command: &'a str) -> Vec<String> {
    let key = b.spec.ssh.key.to_string_lossy().into_owned();
    let mut argv: Vec<String> = vec!["ssh".into(), "-i".into(), key];
    for option in [
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        "ConnectTimeout=5",
        "LogLevel=ERROR",
    ] {
        argv.push("-o".into());
        argv.push(option.into());
    }
    argv.push(format!("root@{address}"));
    argv.push(command.into());
    argv
}

fn ssh_works(b: &Build, address: &str, command: &str) -> bool {
    let argv = ssh_argv(b, address, command);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    b.host.query(&argv, timeout::SSH).is_ok_and(|out| out.ok)
}

/// A TCP probe first (a failed ssh attempt costs seconds of emulated
/// CPU), then `ssh ... true`, until `ssh.timeout` or the domain is gone.
fn wait_ssh(b: &Build, name: &str, address: &str) -> Result<()> {
    if b.host.dry_run() {
        println!("adt-xen-image: would wait for ssh to root@{address}");
        return Ok(());
    }
    let seconds = b.spec.ssh.timeout;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if b.host.tcp_open(address, 22, Duration::from_secs(2)) && ssh_works(b, address, "true") {
            return Ok(());
        }
        if !b.host.query(&["xl", "domid", name], timeout::QUICK)?.ok {
            return Err(Error::DomainGone);
        }
        if Instant::now() >= deadline {
            return Err(Error::NoSsh {
                address: address.into(),
                seconds,
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The checkpoint must be taken with / read-only, or its page cache would
/// describe writes that a fresh snapshot of the origin lacks.
fn check_root_read_only(b: &Build, address: &str) -> Result<()> {
    if b.host.dry_run() {
        return Ok(());
    }
    // the last mount on / is the one in effect (as the runner reads it)
    let check = r#"awk '$2 == "/" { o = $4 } END { exit !(o ~ /(^|,)ro(,|$)/) }' /proc/mounts"#;
    if ssh_works(b, address, check) {
        Ok(())
    } else {
        Err(Error::RootWritable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    #[test]
    fn the_domain_config_has_the_slots_disk_mac_address_and_ro_init() {
        let s = spec();
        let l = Layout { spec: &s };
        let cfg = domain_config(&l, 1);
        assert!(cfg.contains("name = \"adt-bookworm-1\"\n"), "{cfg}");
        assert!(
            cfg.contains("disk = ['phy:/dev/mapper/adt-bookworm-1,xvda,w']\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains("vif = ['bridge=xenbr0,mac=00:16:3e:99:00:0b']\n"),
            "{cfg}"
        );
        assert!(
            cfg.contains(
                "extra = \"console=hvc0 quiet root=/dev/xvda ro init=/lib/systemd/systemd \
                 adt.ip=10.99.0.11/24 adt.gw=10.99.0.1 adt.dns=10.0.2.3 adt.hostname=adt-bookworm-1\"\n"
            ),
            "{cfg}"
        );
        assert!(cfg.contains("kernel = \"/var/lib/autopkgtest-xen/bookworm/vmlinux\"\n"));
        assert!(cfg.contains("ramdisk = \"/var/lib/autopkgtest-xen/bookworm/initrd\"\n"));
        assert!(cfg.contains("memory = 256\nvcpus = 1\n"));
        assert!(cfg.contains("from /var/lib/autopkgtest-xen/bookworm/1.checkpoint on"));
        assert!(cfg.ends_with("on_crash = \"destroy\"\n"));
    }

    #[test]
    fn a_hotplug_dir_puts_the_lean_scripts_on_disk_and_vif() {
        let mut s = spec();
        s.domain.hotplug_dir = Some("/usr/libexec/autopkgtest-xen/hotplug".into());
        let cfg = domain_config(&Layout { spec: &s }, 0);
        assert!(
            cfg.contains(
                "disk = ['format=raw,vdev=xvda,access=rw,\
                 script=/usr/libexec/autopkgtest-xen/hotplug/block,\
                 target=/dev/mapper/adt-bookworm-0']\n"
            ),
            "{cfg}"
        );
        assert!(
            cfg.contains(
                "vif = ['bridge=xenbr0,mac=00:16:3e:99:00:0a,\
                 script=/usr/libexec/autopkgtest-xen/hotplug/vif-bridge']\n"
            ),
            "{cfg}"
        );
    }

    #[test]
    fn an_empty_extra_adds_no_leading_space() {
        let mut s = spec();
        s.domain.extra = String::new();
        let cfg = domain_config(&Layout { spec: &s }, 0);
        assert!(cfg.contains("extra = \"root=/dev/xvda ro "), "{cfg}");
    }
}
