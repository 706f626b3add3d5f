//! `adt-runner run --testbed xen:IMAGE` end to end, as an ordinary user in
//! the group `autopkgtest`: a real dbus-daemon and polkitd, adt-privd with
//! stand-in dmsetup and xl, where the stand-in's `restore` brings the sshd
//! testbed back to pristine (tests/testbed/revert) and the slot's address
//! points at it. Every revert of the runner is then destroy + remove +
//! create + resume through D-Bus.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use adt_privd::names::{resource_name, BUS_NAME};
use adt_systest::bins::binary;
use adt_systest::bus::SystemBus;
use adt_systest::polkit::Polkitd;
use adt_systest::privd::LoopDevice;
use adt_systest::project_root;
use adt_systest::testbed::{scripts_dir, SshTestbed};
use adt_systest::users::{self, MEMBER_A};

const IMAGE: &str = "bookworm";

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Wrapper running the stand-in `tool` with `state` as its state directory.
fn stand_in(dir: &Path, tool: &str) -> PathBuf {
    let path = dir.join(format!("{tool}-wrapper"));
    let target = project_root().join("tests/stand-ins").join(tool);
    executable(
        &path,
        &format!(
            "#!/bin/sh\nADT_STANDIN_STATE={} exec {} \"$@\"\n",
            dir.join("state").display(),
            target.display()
        ),
    );
    path
}

/// adt-privd's configuration: one image, one slot whose domain is the sshd
/// testbed, reverted on every restore. adt-privd (and so the stand-in xl)
/// keeps too few capabilities to revert the testbed itself, so the
/// restore hook asks the test (full root) through a request file.
fn config(dir: &Path, origin: &Path, tb: &SshTestbed) -> PathBuf {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let name = resource_name(IMAGE, 0);
    let (req, done) = (dir.join("revert-request"), dir.join("revert-done"));
    let revert = format!(
        "rm -f {done}; touch {req}; i=0; while [ ! -e {done} ]; do i=$((i+1)); [ $i -lt 1200 ] || exit 1; sleep 0.1; done; [ \"$(cat {done})\" = ok ]",
        done = done.display(),
        req = req.display()
    );
    let domain = dir.join("0.cfg");
    std::fs::write(
        &domain,
        format!("name = \"{name}\"\ndisk = ['phy:/dev/mapper/{name},xvda,w']\nmemory = 256\n# standin-on-restore: {revert}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("0.checkpoint"), b"checkpoint").unwrap();
    let text = format!(
        "ledger_dir = \"{ledger}\"\n[tools]\ndmsetup = \"{dm}\"\nxl = \"{xl}\"\n\
         [limits]\nmax_per_uid = 4\ncommand_timeout = 60\nrestore_timeout = 120\n\
         [images.{IMAGE}]\norigin = \"{origin}\"\nchunk_sectors = 8\n\
         [[images.{IMAGE}.slots]]\ncow = \"{cow}\"\ncheckpoint = \"{ck}\"\ndomain_config = \"{cfg}\"\naddress = \"{host}:{port}\"\n",
        ledger = dir.join("ledger").display(),
        dm = stand_in(dir, "dmsetup").display(),
        xl = stand_in(dir, "xl").display(),
        origin = origin.display(),
        cow = dir.join("cow0").display(),
        ck = dir.join("0.checkpoint").display(),
        cfg = domain.display(),
        host = tb.host,
        port = tb.port,
    );
    let path = dir.join("privd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Serves the restore hook's revert requests until `stop` is set; from
/// the `fail_from`th request on (counting from 0), answers that it failed.
fn serve_reverts(
    dir: &Path,
    tb: &SshTestbed,
    stop: &std::sync::atomic::AtomicBool,
    fail_from: usize,
) {
    let (req, done) = (dir.join("revert-request"), dir.join("revert-done"));
    let revert = scripts_dir().join("revert");
    let mut served = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if std::fs::remove_file(&req).is_ok() {
            let ok = served < fail_from
                && Command::new(&revert)
                    .arg(tb.dir())
                    .status()
                    .is_ok_and(|s| s.success());
            served += 1;
            std::fs::write(&done, if ok { "ok" } else { "failed" }).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn existing(dir: &Path, kind: &str) -> Vec<String> {
    std::fs::read_dir(dir.join("state").join(kind))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn run_as_user(
    bus: &SystemBus,
    runner: &Path,
    fixture: &Path,
    key: &Path,
    out: &Path,
) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", MEMBER_A, "--", "env"])
        .arg(format!("DBUS_SYSTEM_BUS_ADDRESS={}", bus.address))
        .arg(runner)
        .arg("run")
        .arg(fixture)
        .args(["--testbed", &format!("xen:{IMAGE}"), "--identity"])
        .arg(key)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn xen_testbed_through_adt_privd_as_an_ordinary_user() {
    if !nix::unistd::geteuid().is_root() {
        adt_systest::skip("needs root (users, namespaces, loop devices, polkitd)");
        return;
    }
    users::ensure();
    let tb = SshTestbed::start().expect("sshd testbed");
    let bus = SystemBus::start();
    let _polkitd = Polkitd::start(&bus);
    let dir = tempfile::Builder::new()
        .prefix("adt-runner-xen.")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let origin_file = dir.path().join("origin.img");
    std::fs::File::create(&origin_file)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let origin = LoopDevice::attach(&origin_file);
    let cfg = config(dir.path(), &origin.path, &tb);
    let mut privd = Command::new(binary("adt-privd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--bus")
        .arg(&bus.address)
        .stderr(std::fs::File::create(dir.path().join("privd.log")).unwrap())
        .spawn()
        .expect("adt-privd");
    bus.wait_for_name(BUS_NAME, Duration::from_secs(20));

    // The user's own copy of the login key, and an output dir it can write.
    let uid = users::uid(MEMBER_A);
    let user_dir = dir.path().join("user");
    std::fs::create_dir(&user_dir).unwrap();
    let key = user_dir.join("key");
    std::fs::copy(&tb.key_path, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    for p in [&user_dir, &key] {
        nix::unistd::chown(p.as_path(), Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    }
    let out = user_dir.join("out");
    let runner = binary("adt-runner");
    let fixture = project_root().join("tests/fixtures/breaks-testbed");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let o = std::thread::scope(|s| {
        s.spawn(|| serve_reverts(dir.path(), &tb, &stop, usize::MAX));
        let o = run_as_user(&bus, &runner, &fixture, &key, &out);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        o
    });
    let summary = std::fs::read_to_string(out.join("summary")).unwrap_or_default();
    let calls = std::fs::read_to_string(dir.path().join("state/calls")).unwrap_or_default();

    // Again, but the revert between the tests fails (the domain cannot be
    // resumed): a testbed failure, exit 16 as autopkgtest's, with nothing
    // left behind and no crash.
    let out2 = user_dir.join("out-failed-revert");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let o2 = std::thread::scope(|s| {
        s.spawn(|| serve_reverts(dir.path(), &tb, &stop, 1));
        let o = run_as_user(&bus, &runner, &fixture, &key, &out2);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        o
    });
    let left_after_failure = (existing(dir.path(), "xl"), existing(dir.path(), "dm"));
    let _ = privd.kill();
    let _ = privd.wait();
    let why2 = format!(
        "stderr:\n{}\nsummary:\n{}\nprivd log:\n{}",
        String::from_utf8_lossy(&o2.stderr),
        std::fs::read_to_string(out2.join("summary")).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("privd.log")).unwrap_or_default()
    );
    assert_eq!(o2.status.code(), Some(16), "{why2}");
    assert!(
        !String::from_utf8_lossy(&o2.stderr).contains("panicked"),
        "{why2}"
    );
    assert_eq!(
        std::fs::read_to_string(out2.join("exitcode")).unwrap_or_default(),
        "16\n",
        "{why2}"
    );
    assert_eq!(
        left_after_failure,
        (vec![], vec![]),
        "a failed revert leaves no domain or snapshot: {why2}"
    );

    let why = format!(
        "stderr:\n{}\nsummary:\n{summary}\ncalls:\n{calls}\nrestore hook:\n{}\nprivd log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(dir.path().join("state/hook.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("privd.log")).unwrap_or_default()
    );
    assert_eq!(o.status.code(), Some(0), "{why}");
    assert!(summary.contains("damages-system       PASS\n"), "{why}");
    assert!(
        summary.contains("sees-clean-system    PASS\n"),
        "the testbed was reverted between the tests: {why}"
    );
    let restores = calls
        .lines()
        .filter(|l| l.starts_with("xl restore"))
        .count();
    assert!(
        restores >= 2,
        "a revert is destroy + resume through adt-privd: {why}"
    );
    assert!(
        existing(dir.path(), "xl").is_empty() && existing(dir.path(), "dm").is_empty(),
        "nothing is left: {why}"
    );
    let info = std::fs::read_to_string(out.join("testinfo.json")).unwrap();
    assert!(info.contains("\"virt_server\": \"xen:bookworm\""), "{info}");
}
