//! `adt-xen-image prepare-root` for real: a debootstrap of Debian 12 from
//! the mirror into a directory, made a testbed root (systemd, the network
//! unit, the runner's key, read-only fstab, apt sources and lists, sshd
//! settings that sshd itself accepts). The same code fills the origin
//! volume of a debootstrap-sourced image; the Xen lab proves the rest of
//! the build (volumes, checkpoints) with an image built elsewhere.
//! Needs root and the Debian mirror.

use std::path::Path;
use std::process::Command;

fn spec(dir: &Path, key: &Path) -> String {
    format!(
        r#"image = "bookworm"
volume_group = "adt"
slots = 1
origin_size = "3G"
cow_size = "1G"
state_dir = "{state}"

[root]
debootstrap = {{ suite = "bookworm", include = ["ca-certificates"] }}
authorized_key = "{key}"

[domain]
kernel = "/nonexistent/vmlinux"
ramdisk = "/nonexistent/initrd"

[network]
first_address = "10.99.0.10"
prefix_len = 24
gateway = "10.99.0.1"
dns = "10.0.2.3"
mac_prefix = "00:16:3e:99:00"

[ssh]
key = "/nonexistent/id_ed25519"
"#,
        state = dir.join("state").display(),
        key = key.display()
    )
}

#[test]
fn prepare_root_debootstraps_a_testbed_root_that_sshd_accepts() {
    if !nix_is_root() {
        adt_systest::skip("needs root (debootstrap, chroot)");
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("adt-prepare-root.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let key = work.path().join("runner.pub");
    let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0kP1yo3Zz9rN0h0cXn0yD6tW8Ys3TQv+6j1Xn9pKf runner@test\n";
    std::fs::write(&key, public).unwrap();
    let spec_path = work.path().join("image.toml");
    std::fs::write(&spec_path, spec(work.path(), &key)).unwrap();
    let root = work.path().join("root");

    let out = Command::new(env!("CARGO_BIN_EXE_adt-xen-image"))
        .args(["prepare-root", "--config"])
        .arg(&spec_path)
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prepare-root failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let exists = |p: &str| root.join(p).exists();
    assert!(exists("lib/systemd/systemd"), "systemd is installed");
    assert!(exists("usr/sbin/sshd"), "openssh-server is installed");
    assert!(exists("usr/bin/ip"), "iproute2 is installed");
    assert!(exists("usr/lib/autopkgtest-xen/testbed-net"));
    // (absolute, as systemctl enable makes them: it resolves in the testbed)
    assert_eq!(
        std::fs::read_link(
            root.join("etc/systemd/system/multi-user.target.wants/adt-testbed-net.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/adt-testbed-net.service")
    );
    assert!(exists("etc/systemd/system/adt-testbed-net.service"));
    assert_eq!(read("root/.ssh/authorized_keys"), public);
    assert_eq!(
        read("etc/fstab"),
        "/dev/xvda / ext4 ro,errors=remount-ro 0 1\n"
    );
    assert_eq!(read("etc/machine-id").trim().len(), 32);
    let sources = read("etc/apt/sources.list.d/debian.sources");
    assert!(
        sources.contains("Suites: bookworm bookworm-updates\n"),
        "{sources}"
    );
    assert!(sources.contains("Suites: bookworm-security\n"), "{sources}");
    let lists: Vec<_> = std::fs::read_dir(root.join("var/lib/apt/lists"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        .collect();
    assert!(
        lists.len() >= 3,
        "package lists of the suite, -updates and -security: {lists:?}"
    );
    assert!(
        !root.join("proc/self").exists(),
        "proc was unmounted after apt-get update"
    );
    // sshd itself accepts the configuration (its drop-in included); at
    // boot ssh.service makes its /run/sshd.
    std::fs::create_dir_all(root.join("run/sshd")).unwrap();
    let t = Command::new("chroot")
        .arg(&root)
        .args(["/usr/sbin/sshd", "-t"])
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "sshd -t in the root: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let effective = Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/sbin/sshd",
            "-T",
            "-C",
            "user=root,host=x,addr=10.99.0.1",
        ])
        .output()
        .unwrap();
    let effective = String::from_utf8_lossy(&effective.stdout);
    assert!(
        effective.contains("passwordauthentication no"),
        "{effective}"
    );
    assert!(
        effective.contains("permitrootlogin without-password"),
        "{effective}"
    );

    // A second run on the prepared directory refuses to debootstrap over it.
    let again = Command::new(env!("CARGO_BIN_EXE_adt-xen-image"))
        .args(["prepare-root", "--config"])
        .arg(&spec_path)
        .arg(&root)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}
