use super::*;
use crate::testing::FakeHost;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA runner@dom0";

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn bookworm() -> Debootstrap {
    Debootstrap {
        suite: "bookworm".into(),
        mirror: "http://deb.debian.org/debian".into(),
        security_mirror: "http://security.example/debian-security".into(),
        include: vec!["dpkg-dev".into(), "openssh-server".into()],
        deb_src: true,
        components: vec!["main".into()],
    }
}

/// A tree like one debootstrap leaves: real files where links go.
fn debian_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in [
        "etc/ssh/sshd_config.d",
        "etc/apt/sources.list.d",
        "sbin",
        "root",
        "run",
        "proc",
    ] {
        fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    fs::create_dir_all(dir.path().join("lib/systemd")).unwrap();
    fs::write(dir.path().join("lib/systemd/systemd"), "ELF").unwrap();
    fs::write(dir.path().join("etc/machine-id"), "").unwrap();
    fs::write(dir.path().join("etc/hostname"), "builder\n").unwrap();
    fs::write(dir.path().join("etc/resolv.conf"), "nameserver 9.9.9.9\n").unwrap();
    fs::write(dir.path().join("etc/fstab"), "# UNCONFIGURED FSTAB\n").unwrap();
    fs::write(
        dir.path().join("etc/apt/sources.list"),
        "deb http://x bookworm main\n",
    )
    .unwrap();
    dir
}

#[test]
fn configure_root_writes_the_files_with_their_modes() {
    let tree = debian_tree();
    let d = tree.path();
    let host = FakeHost::default();
    let config = RootConfig {
        authorized_key: KEY,
        apt: None,
    };
    configure_root(d, &config, &host).unwrap();

    let net = d.join("usr/lib/autopkgtest-xen/testbed-net");
    assert_eq!(fs::read_to_string(&net).unwrap(), NET_SCRIPT);
    assert!(NET_SCRIPT.starts_with("#!/bin/sh\n"));
    assert_eq!(mode(&net), 0o755);
    let units = d.join("etc/systemd/system");
    assert_eq!(
        fs::read_to_string(units.join("adt-testbed-net.service")).unwrap(),
        NET_UNIT
    );
    assert!(NET_UNIT.contains("ExecStart=/usr/lib/autopkgtest-xen/testbed-net\n"));
    assert!(NET_UNIT.contains("Before=network.target ssh.service\n"));
    assert_eq!(
        fs::read_link(units.join("multi-user.target.wants/adt-testbed-net.service")).unwrap(),
        Path::new("/etc/systemd/system/adt-testbed-net.service")
    );
    for timer in ["apt-daily.timer", "apt-daily-upgrade.timer"] {
        assert_eq!(
            fs::read_link(units.join(timer)).unwrap(),
            Path::new("/dev/null"),
            "{timer} is masked"
        );
    }
    let id = fs::read_to_string(d.join("etc/machine-id")).unwrap();
    assert_eq!(id.trim().len(), 32, "{id:?}");
    assert!(id.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{id:?}");
    assert_eq!(mode(&d.join("root/.ssh")), 0o700);
    let keys = d.join("root/.ssh/authorized_keys");
    assert_eq!(fs::read_to_string(&keys).unwrap(), format!("{KEY}\n"));
    assert_eq!(mode(&keys), 0o600);
    for (link, target) in [
        ("etc/hostname", "/run/hostname"),
        ("etc/resolv.conf", "/run/resolv.conf"),
        ("etc/hosts", "/run/hosts"),
    ] {
        assert_eq!(
            fs::read_link(d.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
    }
    assert_eq!(
        fs::read_to_string(d.join("etc/fstab")).unwrap(),
        "/dev/xvda / ext4 ro,errors=remount-ro 0 1\n"
    );
    let sshd = d.join("etc/ssh/sshd_config.d/autopkgtest-xen.conf");
    let sshd_text = fs::read_to_string(&sshd).unwrap();
    assert!(sshd_text.contains("PermitRootLogin prohibit-password\n"));
    assert!(sshd_text.contains("PasswordAuthentication no\n"));
    assert_eq!(mode(&sshd), 0o644);
    // no apt for an image source: nothing ran, the old list stays
    assert!(host.runs().is_empty(), "{:?}", host.runs());
    assert!(d.join("etc/apt/sources.list").exists());
    assert!(!d.join("etc/apt/sources.list.d/debian.sources").exists());
}

#[test]
fn configure_root_is_idempotent() {
    let tree = debian_tree();
    let host = FakeHost::default();
    let config = RootConfig {
        authorized_key: KEY,
        apt: None,
    };
    configure_root(tree.path(), &config, &host).unwrap();
    configure_root(tree.path(), &config, &host).unwrap();
    assert_eq!(
        fs::read_link(tree.path().join("etc/hosts")).unwrap(),
        Path::new("/run/hosts")
    );
}

#[test]
fn testbed_net_writes_what_the_run_links_point_to() {
    for (_, target) in RUN_LINKS {
        assert!(
            NET_SCRIPT.contains(&format!("> {target}")),
            "testbed-net must write {target}"
        );
    }
}

#[test]
fn a_root_without_systemd_is_refused_before_anything_is_written() {
    let tree = debian_tree();
    fs::remove_file(tree.path().join("lib/systemd/systemd")).unwrap();
    let config = RootConfig {
        authorized_key: KEY,
        apt: None,
    };
    let e = configure_root(tree.path(), &config, &FakeHost::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("systemd-sysv"), "{e}");
    assert!(!tree.path().join("root/.ssh/authorized_keys").exists());
}

#[test]
fn an_existing_machine_id_is_kept() {
    let tree = debian_tree();
    let id = "0123456789abcdef0123456789abcdef\n";
    fs::write(tree.path().join("etc/machine-id"), id).unwrap();
    let config = RootConfig {
        authorized_key: KEY,
        apt: None,
    };
    configure_root(tree.path(), &config, &FakeHost::default()).unwrap();
    assert_eq!(
        fs::read_to_string(tree.path().join("etc/machine-id")).unwrap(),
        id
    );
}

#[test]
fn a_debootstrapped_root_gets_sources_and_package_lists() {
    let tree = debian_tree();
    let d = tree.path();
    let host = FakeHost::default();
    let apt = bookworm();
    let config = RootConfig {
        authorized_key: KEY,
        apt: Some(&apt),
    };
    configure_root(d, &config, &host).unwrap();

    let sources = fs::read_to_string(d.join("etc/apt/sources.list.d/debian.sources")).unwrap();
    assert!(sources.contains(
        "Types: deb deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
    ), "{sources}");
    assert!(
        sources
            .contains("URIs: http://security.example/debian-security\nSuites: bookworm-security\n"),
        "{sources}"
    );
    assert!(
        !d.join("etc/apt/sources.list").exists(),
        "debootstrap's list repeats the suite"
    );
    let root = d.to_string_lossy();
    let proc_dir = d.join("proc").to_string_lossy().into_owned();
    assert_eq!(
        host.runs(),
        vec![
            format!("mount -t proc proc {proc_dir}"),
            format!("chroot {root} apt-get -q update"),
            format!("umount {proc_dir}"),
        ]
    );
    assert!(
        !d.join("run/resolv.conf").exists(),
        "the lent resolv.conf is taken back"
    );
}

#[test]
fn a_failed_apt_update_still_unmounts_proc() {
    let tree = debian_tree();
    let mut world = crate::testing::World::default();
    world.failing.push("chroot".into());
    let host = FakeHost::with(world);
    let apt = bookworm();
    let config = RootConfig {
        authorized_key: KEY,
        apt: Some(&apt),
    };
    let e = configure_root(tree.path(), &config, &host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("apt-get -q update"), "{e}");
    assert_eq!(host.ran("umount "), 1);
}

#[test]
fn sources_without_deb_src_and_for_sid() {
    let mut d = bookworm();
    d.deb_src = false;
    assert!(sources_text(&d).contains("Types: deb\n"));
    d.suite = "sid".into();
    let text = sources_text(&d);
    assert!(
        text.contains("Suites: sid\n") && !text.contains("security"),
        "{text}"
    );
}

#[test]
fn debootstrap_includes_what_the_init_needs_once() {
    let host = FakeHost::default();
    debootstrap(Path::new("/mnt/x"), &bookworm(), &host).unwrap();
    assert_eq!(
        host.runs(),
        vec![
            "debootstrap --variant=minbase --include=systemd-sysv,openssh-server,iproute2,dpkg-dev \
             --components=main bookworm /mnt/x http://deb.debian.org/debian"
        ]
    );
}

#[test]
fn the_hash_follows_the_key_and_the_sources() {
    let apt = bookworm();
    let a = RootConfig {
        authorized_key: KEY,
        apt: None,
    }
    .hash();
    let b = RootConfig {
        authorized_key: "ssh-ed25519 OTHER",
        apt: None,
    }
    .hash();
    let c = RootConfig {
        authorized_key: KEY,
        apt: Some(&apt),
    }
    .hash();
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_eq!(
        a,
        RootConfig {
            authorized_key: KEY,
            apt: None
        }
        .hash()
    );
}

#[test]
fn a_private_key_is_not_taken_for_a_public_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("id");
    fs::write(&p, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let e = read_authorized_key(&p).unwrap_err().to_string();
    assert!(e.contains("root.authorized_key"), "{e}");
}

#[test]
fn prepare_root_refuses_to_debootstrap_into_a_full_directory() {
    let tree = debian_tree();
    let key = tree.path().join("key.pub");
    fs::write(&key, KEY).unwrap();
    let mut spec = crate::testing::spec();
    spec.root.from_image = None;
    spec.root.debootstrap = Some(bookworm());
    spec.root.authorized_key = key;
    let host = FakeHost::default();
    let e = prepare_root(&spec, tree.path(), &host)
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not empty"), "{e}");
    assert!(host.runs().is_empty());

    let fresh = tree.path().join("new-root");
    prepare_root(&spec, &fresh, &host).unwrap();
    assert!(host.runs()[0].starts_with("debootstrap --variant=minbase"));
    assert!(fresh.join("usr/lib/autopkgtest-xen/testbed-net").exists());
}
