use std::fs;

use super::*;
use crate::error::Error;
use crate::testing::{FakeHost, Lab, World};

fn build(lab: &Lab, host: &FakeHost) -> crate::error::Result<()> {
    Build::new(&lab.spec, host, &lab.options).run()
}

/// A lab built once from nothing, and the world it left.
fn built() -> (Lab, World) {
    let mut lab = Lab::new();
    lab.options.create_volumes = true;
    let host = FakeHost::with(World::default());
    build(&lab, &host).expect("a first build succeeds");
    lab.options.create_volumes = false;
    let world = host.world.borrow().clone();
    (lab, world)
}

#[test]
fn a_first_build_makes_volumes_origin_slots_and_privd_config() {
    let mut lab = Lab::new();
    lab.options.create_volumes = true;
    let host = FakeHost::with(World::default());
    build(&lab, &host).unwrap();
    let runs = host.runs();
    let creates: Vec<_> = runs.iter().filter(|r| r.starts_with("lvcreate")).collect();
    assert_eq!(
        creates,
        [
            "lvcreate -q -y -W y -Z n -L 13b -n bookworm-origin adt",
            "lvcreate -q -y -W y -Z n -L 1G -n bookworm-cow0 adt",
            "lvcreate -q -y -W y -Z n -L 1G -n bookworm-cow1 adt",
        ],
        "the origin is sized to the source without origin_size"
    );
    let source = lab.path("domu.img");
    assert_eq!(
        host.ran(&format!(
            "e2image -ra {} /dev/adt/bookworm-origin",
            source.display()
        )),
        1
    );
    let table = "'0 6291456 snapshot /dev/adt/bookworm-origin /dev/adt/bookworm-cow1 n 8'";
    assert!(runs.contains(&format!("dmsetup create adt-bookworm-1 --table {table}")));
    assert_eq!(host.ran("xl create -q"), 2);
    assert_eq!(host.ran("xl save adt-bookworm-"), 2);
    assert_eq!(host.ran("dmsetup remove --retry adt-bookworm-"), 2);
    // the origin was configured as a testbed root while mounted
    assert!(lab
        .state("mnt/usr/lib/autopkgtest-xen/testbed-net")
        .exists());
    for slot in 0..2 {
        assert!(crate::files::non_empty(
            &lab.state(&format!("{slot}.checkpoint"))
        ));
    }
    let w = host.world.borrow();
    assert!(
        w.domains.is_empty() && w.dm.is_empty(),
        "nothing left running"
    );
    let text = fs::read_to_string(&lab.options.privd_config).unwrap();
    let c = adt_privd::config::Config::parse(&text, &lab.options.privd_config).unwrap();
    let image = &c.images["bookworm"];
    assert_eq!(image.slots[1].domain_config, lab.state("1.cfg"));
    assert_eq!(c.tools.xl, std::path::Path::new("/usr/sbin/xl"));
}

#[test]
fn a_missing_cow_without_create_volumes_is_refused_and_nothing_is_created() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.lvs.remove("adt/bookworm-cow1");
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err();
    assert!(matches!(e, Error::NoVolume { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.starts_with("slot 1's COW volume /dev/adt/bookworm-cow1 does not exist"),
        "{e}"
    );
    assert!(e.contains("--create-volumes"), "{e}");
    assert!(
        host.runs().is_empty(),
        "nothing may change: {:?}",
        host.runs()
    );
    assert!(!lab.options.privd_config.exists());
}

#[test]
fn a_missing_volume_group_is_made_only_when_asked() {
    let lab = Lab::new();
    let mut world = World::default();
    world.vgs.clear();
    let host = FakeHost::with(world.clone());
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(
        e.contains("volume group adt does not exist") && e.contains("/dev/vdb"),
        "{e}"
    );
    assert!(host.runs().is_empty());

    let mut lab = lab;
    lab.options.create_volumes = true;
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    let runs = host.runs();
    assert_eq!(
        runs[..2],
        ["pvcreate -q -y /dev/vdb", "vgcreate -q adt /dev/vdb"]
    );
}

#[test]
fn an_existing_domain_or_snapshot_of_a_slot_is_refused() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.domains.insert("adt-bookworm-0".into());
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(
        e.starts_with("domain adt-bookworm-0 exists: a testbed in use?"),
        "{e}"
    );
    assert!(e.contains("xl destroy adt-bookworm-0"), "{e}");
    assert!(host.runs().is_empty());

    let mut world = lab.world_with_volumes();
    world.dm.insert("adt-bookworm-1".into());
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(e.starts_with("snapshot adt-bookworm-1 exists"), "{e}");
    assert!(host.runs().is_empty());
}

#[test]
fn a_rerun_with_current_stamps_and_checkpoints_rebuilds_nothing() {
    let (lab, world) = built();
    let privd_before = fs::read_to_string(&lab.options.privd_config).unwrap();
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert!(
        host.runs().is_empty(),
        "a current image needs no change: {:?}",
        host.runs()
    );
    assert_eq!(
        fs::read_to_string(&lab.options.privd_config).unwrap(),
        privd_before
    );
}

#[test]
fn a_changed_domain_config_remakes_only_that_slots_checkpoint() {
    let (lab, world) = built();
    fs::write(lab.state("0.checkpoint"), "slot 0 as it was").unwrap();
    let cfg1 = lab.state("1.cfg");
    let old = fs::read_to_string(&cfg1)
        .unwrap()
        .replace("memory = 256", "memory = 128");
    fs::write(&cfg1, old).unwrap();
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert_eq!(
        fs::read_to_string(lab.state("0.checkpoint")).unwrap(),
        "slot 0 as it was"
    );
    assert_eq!(
        fs::read_to_string(lab.state("1.checkpoint")).unwrap(),
        "saved"
    );
    assert_eq!(host.ran("xl create"), 1);
    assert_eq!(host.ran(&format!("xl create -q {}", cfg1.display())), 1);
    assert_eq!(host.ran("e2image"), 0);
    assert!(fs::read_to_string(&cfg1).unwrap().contains("memory = 256"));
}

#[test]
fn refilling_an_open_origin_is_refused_and_keeps_the_checkpoints() {
    let (mut lab, mut world) = built();
    world.open.insert("adt-bookworm--origin".into(), 1);
    lab.options.refill_origin = true;
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err();
    assert!(matches!(e, Error::OriginOpen { open: 1, .. }), "{e}");
    assert!(e.to_string().contains("an origin in use"), "{e}");
    assert!(host.runs().is_empty(), "{:?}", host.runs());
    assert!(crate::files::non_empty(&lab.state("0.checkpoint")));
}

#[test]
fn refill_origin_refills_and_remakes_every_checkpoint() {
    let (mut lab, world) = built();
    lab.options.refill_origin = true;
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert_eq!(host.ran("e2image -ra"), 1);
    assert_eq!(host.ran("xl save"), 2);
}

#[test]
fn a_new_source_image_refills_the_origin() {
    let (lab, mut world) = built();
    world.fs_uuid = "another-uuid".into();
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert_eq!(host.ran("e2image -ra"), 1);
    assert_eq!(host.ran("xl save"), 2);
    let stamp = fs::read_to_string(lab.state("origin.stamp")).unwrap();
    assert!(stamp.starts_with("another-uuid Sun Nov 22"), "{stamp}");
}

#[test]
fn a_new_key_reconfigures_the_root_without_refilling() {
    let (lab, world) = built();
    fs::write(
        lab.path("id_ed25519.pub"),
        "ssh-ed25519 NEWKEY runner@dom0\n",
    )
    .unwrap();
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert_eq!(host.ran("e2image"), 0);
    assert_eq!(host.ran("mount -t ext4 /dev/adt/bookworm-origin"), 1);
    assert_eq!(host.ran("xl save"), 2);
    let keys = fs::read_to_string(lab.state("mnt/root/.ssh/authorized_keys")).unwrap();
    assert_eq!(keys, "ssh-ed25519 NEWKEY runner@dom0\n");
}

#[test]
fn a_new_kernel_remakes_every_checkpoint() {
    let (lab, world) = built();
    fs::write(lab.path("vmlinux"), "kernel 2").unwrap();
    let host = FakeHost::with(world);
    build(&lab, &host).unwrap();
    assert_eq!(
        fs::read_to_string(lab.state("vmlinux")).unwrap(),
        "kernel 2"
    );
    assert_eq!(host.ran("xl save"), 2);
    assert_eq!(host.ran("e2image"), 0);
}

#[test]
fn a_slot_without_ssh_fails_naming_it_and_leaves_nothing() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.ssh_up = false;
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(
        e.starts_with("slot 0 (adt-bookworm-0): no ssh to root@10.99.0.10 after 1 s"),
        "{e}"
    );
    assert_eq!(host.ran("xl destroy adt-bookworm-0"), 1);
    assert_eq!(host.ran("dmsetup remove --retry adt-bookworm-0"), 1);
    let w = host.world.borrow();
    assert!(w.domains.is_empty() && w.dm.is_empty());
    assert!(!lab.state("0.checkpoint").exists());
    assert!(!lab.options.privd_config.exists());
}

#[test]
fn a_writable_root_is_not_saved() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.root_read_only = false;
    let host = FakeHost::with(world);
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(e.contains("not mounted read-only"), "{e}");
    assert_eq!(host.ran("xl save"), 0);
    assert_eq!(host.ran("xl destroy adt-bookworm-0"), 1);
}

#[test]
fn no_xen_or_no_bridge_is_refused_first() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.xen = false;
    let e = build(&lab, &FakeHost::with(world)).unwrap_err().to_string();
    assert!(e.starts_with("`xl info` fails"), "{e}");
    let mut world = lab.world_with_volumes();
    world.bridges.clear();
    let e = build(&lab, &FakeHost::with(world)).unwrap_err().to_string();
    assert!(e.starts_with("bridge xenbr0 does not exist"), "{e}");
}

#[test]
fn a_dry_run_changes_no_file_and_prints_the_commands() {
    let mut lab = Lab::new();
    lab.options.create_volumes = true;
    let host = FakeHost {
        dry: true,
        ..FakeHost::with(World::default())
    };
    build(&lab, &host).unwrap();
    assert!(
        !lab.spec.state_dir.exists(),
        "the state dir is not even created"
    );
    assert!(!lab.options.privd_config.exists());
    assert_eq!(host.ran("lvcreate"), 3);
    assert_eq!(host.ran("xl save"), 2);
    assert!(
        host.world.borrow().lvs.is_empty(),
        "the changes were not applied"
    );
}

#[test]
fn a_domain_that_dies_before_ssh_fails_fast() {
    let lab = Lab::new();
    let mut world = lab.world_with_volumes();
    world.ssh_up = false;
    world.failing.push("xl domid adt-bookworm-0".into());
    let host = FakeHost::with(world);
    let started = std::time::Instant::now();
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(
        e.starts_with("slot 0 (adt-bookworm-0): the domain is gone"),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(900));
    assert!(host.world.borrow().dm.is_empty(), "its snapshot is removed");
}

#[test]
fn a_second_build_of_one_image_at_once_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let host = FakeHost::with(lab.world_with_volumes());
    fs::create_dir_all(&lab.spec.state_dir).unwrap();
    let held = fs::File::open(&lab.spec.state_dir).unwrap();
    let held = nix::fcntl::Flock::lock(held, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let e = build(&lab, &host).unwrap_err().to_string();
    assert!(
        e.contains("is locked: another adt-xen-image build of this image is running"),
        "{e}"
    );
    assert!(host.runs().is_empty(), "no tool ran: {:?}", host.runs());
    drop(held);
    build(&lab, &host).expect("once the other build ends, it builds");
}
