//! adt-privd end to end: a real dbus-daemon with the project's bus policy,
//! a real polkitd with the project's action and example rules, the daemon
//! binary, stand-in dmsetup/xl, and clients running as real users in and
//! out of the group `autopkgtest`.
//!
//! Needs root (users, loop devices, mount namespaces); CI runs as root.

use std::time::{Duration, Instant};

use adt_privd::names::{errors, resource_name};
use adt_privd::privileges;
use adt_systest::client::{Client, Reply};
use adt_systest::privd::{PrivdEnv, IMAGE, ORIGIN_SECTORS, SLOTS};
use adt_systest::users::{uid, MEMBER_A, MEMBER_B, OUTSIDER};
use adt_systest::{project_root, wait_for};

const SNAP0: &str = "adt-bookworm-0";

#[test]
fn full_cycle_as_a_group_member_runs_the_expected_commands() {
    let env = PrivdEnv::start();
    let before = env.calls().len();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let snap = a.call("CreateSnapshot", IMAGE).ok();
    assert_eq!(snap, SNAP0);
    assert_eq!(env.existing("dm"), vec![SNAP0]);
    let table = std::fs::read_to_string(env.state().join("dm").join(SNAP0)).unwrap();
    assert_eq!(
        table.trim(),
        format!(
            "0 {ORIGIN_SECTORS} snapshot {} {} n 8",
            env.origin.path.display(),
            env.dir.path().join("cow0").display()
        ),
        "the table must use the origin's real size"
    );
    let resumed = a.call("ResumeDomain", &snap).ok();
    assert_eq!(resumed, format!("{SNAP0} 10.99.0.10"));
    assert_eq!(env.existing("xl"), vec![SNAP0]);
    let list = a.call("ListTestbeds", "").ok();
    let list: Vec<(String, String, String, String, u32)> = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list,
        vec![(
            SNAP0.into(),
            IMAGE.into(),
            "running".into(),
            "10.99.0.10".into(),
            uid(MEMBER_A)
        )]
    );
    assert_eq!(a.call("DestroyDomain", SNAP0), Reply::Ok(String::new()));
    assert!(env.existing("xl").is_empty());
    assert_eq!(a.call("RemoveSnapshot", SNAP0), Reply::Ok(String::new()));
    assert!(env.existing("dm").is_empty());
    assert!(
        env.ledger_names().is_empty(),
        "ledger: {:?}",
        env.ledger_names()
    );
    let calls: Vec<String> = env.calls()[before..]
        .iter()
        .filter(|c| !c.ends_with(" list") && !c.ends_with(" ls") && !c.contains(" ls "))
        .cloned()
        .collect();
    let verbs: Vec<&str> = calls
        .iter()
        .map(|c| c.splitn(3, ' ').take(2).last().unwrap())
        .collect();
    assert_eq!(
        verbs,
        ["create", "restore", "destroy", "remove"],
        "{calls:#?}"
    );
    assert!(calls[1].starts_with("xl restore -e "), "{}", calls[1]);
}

#[test]
fn an_outsider_is_denied_and_no_tool_runs() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    a.call("CreateSnapshot", IMAGE).ok();
    let before = env.calls();
    let mut out = Client::connect(&env.bus, Some(OUTSIDER));
    for (method, arg) in [
        ("CreateSnapshot", IMAGE),
        ("ResumeDomain", SNAP0),
        ("DestroyDomain", SNAP0),
        ("RemoveSnapshot", SNAP0),
    ] {
        let reply = out.call(method, arg);
        assert_eq!(
            reply.error_name(),
            errors::ACCESS_DENIED,
            "{method}: {reply:?}"
        );
    }
    assert_eq!(env.calls(), before, "a denied call ran a tool");
    assert_eq!(env.existing("dm"), vec![SNAP0]);
    // Reading is allowed: it changes nothing.
    assert!(out.call("ListTestbeds", "").ok().contains(SNAP0));
    // The bus policy keeps the name for root.
    assert_eq!(
        out.call("Own", "org.autopkgtest.Xen1").error_name(),
        errors::ACCESS_DENIED
    );
}

#[test]
fn another_user_cannot_touch_a_testbed() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    a.call("CreateSnapshot", IMAGE).ok();
    a.call("ResumeDomain", SNAP0).ok();
    let before = env.calls();
    let mut b = Client::connect(&env.bus, Some(MEMBER_B));
    for method in ["ResumeDomain", "DestroyDomain", "RemoveSnapshot"] {
        let reply = b.call(method, SNAP0);
        assert_eq!(
            reply.error_name(),
            errors::ACCESS_DENIED,
            "{method}: {reply:?}"
        );
    }
    assert_eq!(env.calls(), before, "b's calls ran a tool");
    assert_eq!(env.existing("xl"), vec![SNAP0]);
    assert_eq!(env.existing("dm"), vec![SNAP0]);
    // b gets the other slot, which is its own.
    assert_eq!(
        b.call("CreateSnapshot", IMAGE).ok(),
        resource_name(IMAGE, 1)
    );
}

#[test]
fn malformed_and_unknown_names_are_invalid_args_and_no_tool_runs() {
    let env = PrivdEnv::start();
    let before = env.calls();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let long = "a".repeat(4096);
    let bad = [
        "a/b",
        "..",
        "../../dev/sda",
        "a b",
        "/dev/vg/origin",
        "",
        long.as_str(),
        "Bookworm",
    ];
    for name in bad {
        for method in [
            "CreateSnapshot",
            "ResumeDomain",
            "DestroyDomain",
            "RemoveSnapshot",
        ] {
            let reply = a.call(method, name);
            assert_eq!(
                reply.error_name(),
                errors::INVALID_ARGS,
                "{method} {name:.40?}: {reply:?}"
            );
        }
    }
    for (method, name) in [
        ("CreateSnapshot", "sid"),
        ("ResumeDomain", "adt-bookworm-1"),
        ("DestroyDomain", "adt-bookworm-0"),
        ("RemoveSnapshot", "adt-sid-0"),
    ] {
        let reply = a.call(method, name);
        assert_eq!(
            reply.error_name(),
            errors::INVALID_ARGS,
            "{method} {name}: {reply:?}"
        );
    }
    assert_eq!(env.calls(), before, "a rejected call ran a tool");
}

#[test]
fn all_slots_busy_is_no_free_slot() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    for slot in 0..SLOTS {
        assert_eq!(
            a.call("CreateSnapshot", IMAGE).ok(),
            resource_name(IMAGE, slot)
        );
    }
    let reply = a.call("CreateSnapshot", IMAGE);
    assert_eq!(reply.error_name(), errors::NO_FREE_SLOT, "{reply:?}");
    // A freed slot is handed out again.
    a.call("RemoveSnapshot", SNAP0).ok();
    assert_eq!(a.call("CreateSnapshot", IMAGE).ok(), SNAP0);
}

#[test]
fn a_killed_client_loses_its_testbed_within_two_seconds() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let mut b = Client::connect(&env.bus, Some(MEMBER_B));
    a.call("CreateSnapshot", IMAGE).ok();
    a.call("ResumeDomain", SNAP0).ok();
    let theirs = b.call("CreateSnapshot", IMAGE).ok();
    let killed = Instant::now();
    a.kill9();
    // Gone means gone from the ledger too, which privd updates last,
    // after the tools: waiting only for the tools raced with it.
    let took = wait_for("a's testbed to go", Duration::from_secs(2), || {
        env.existing("xl").is_empty()
            && env.existing("dm") == vec![theirs.clone()]
            && env.ledger_names() == vec![format!("{theirs}.json")]
    });
    assert!(killed.elapsed() < Duration::from_secs(2));
    eprintln!("teardown after client death: {took:?}");
    assert_eq!(env.existing("dm"), vec![theirs], "b's testbed must stay");
}

#[test]
fn a_client_that_dies_while_its_snapshot_is_made_leaves_nothing() {
    let env = PrivdEnv::start();
    // dmsetup takes a second; the caller is gone after 0.3 s.
    std::fs::write(env.state().join("delay-dmsetup-create"), "1").unwrap();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    a.send_line("Fire CreateSnapshot bookworm");
    a.wait();
    wait_for("dmsetup create to run", Duration::from_secs(5), || {
        env.calls().iter().any(|c| c.starts_with("dmsetup create"))
    });
    wait_for("the orphan to be torn down", Duration::from_secs(4), || {
        env.calls().iter().any(|c| c.starts_with("dmsetup remove"))
            && env.existing("dm").is_empty()
            && env.ledger_names().is_empty()
    });
    assert_eq!(
        Client::connect(&env.bus, Some(MEMBER_B))
            .call("ListTestbeds", "")
            .ok(),
        "[]"
    );
}

#[test]
fn a_sigkilled_daemon_leaves_nothing_after_restart() {
    let mut env = PrivdEnv::start();
    // Killed between create and resume, then with a domain up.
    for steps in [
        &["CreateSnapshot"][..],
        &["CreateSnapshot", "ResumeDomain"][..],
    ] {
        let mut a = Client::connect(&env.bus, Some(MEMBER_A));
        a.call("CreateSnapshot", IMAGE).ok();
        if steps.len() == 2 {
            a.call("ResumeDomain", SNAP0).ok();
            assert_eq!(env.existing("xl"), vec![SNAP0]);
        }
        env.kill9();
        assert_eq!(
            env.existing("dm"),
            vec![SNAP0],
            "the kill left the snapshot"
        );
        assert_eq!(
            env.ledger_names(),
            vec![format!("{SNAP0}.json")],
            "the ledger holds it"
        );
        drop(a);
        env.spawn();
        assert!(env.existing("dm").is_empty(), "{steps:?}: {}", env.log());
        assert!(env.existing("xl").is_empty(), "{steps:?}: {}", env.log());
        assert!(env.ledger_names().is_empty(), "{steps:?}");
    }
}

#[test]
fn leftovers_of_configured_slots_unknown_to_the_ledger_are_torn_down_at_start() {
    let mut env = PrivdEnv::start();
    env.kill9();
    // A device and a domain of a configured slot from some earlier life,
    // not in the ledger: privd's, torn down.
    let slot1 = format!("adt-{IMAGE}-1");
    std::fs::write(
        env.state().join("dm").join(&slot1),
        "0 8 snapshot x y n 8\n",
    )
    .unwrap();
    std::fs::write(env.state().join("xl").join(&slot1), "cfg\n").unwrap();
    // adt-* names privd never makes (an LVM snapshot in a volume group
    // named adt, a domain started by hand), and a non-adt device: not its.
    std::fs::write(env.state().join("dm/adt-old-3"), "0 8 snapshot x y n 8\n").unwrap();
    std::fs::write(env.state().join("xl/adt-old-3"), "cfg\n").unwrap();
    std::fs::write(env.state().join("dm/lvm-data"), "0 8 linear x 0\n").unwrap();
    env.spawn();
    assert_eq!(
        env.existing("dm"),
        vec!["adt-old-3", "lvm-data"],
        "only configured slots' names are privd's"
    );
    assert_eq!(env.existing("xl"), vec!["adt-old-3"]);
}

#[test]
fn a_failed_restore_rolls_back_and_reports_the_tool_error() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    a.call("CreateSnapshot", IMAGE).ok();
    env.fail(
        "xl",
        "restore",
        "xc: error: Failed to read checkpoint record: Internal error",
    );
    let reply = a.call("ResumeDomain", SNAP0);
    let Reply::Err { name, message } = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(name, errors::COMMAND_FAILED);
    assert!(
        message.contains("Failed to read checkpoint record"),
        "{message}"
    );
    assert!(message.contains("rolled back"), "{message}");
    assert!(
        env.existing("dm").is_empty(),
        "the snapshot must be rolled back"
    );
    assert!(env.existing("xl").is_empty());
    assert!(env.ledger_names().is_empty());
    assert_eq!(a.call("ListTestbeds", "").ok(), "[]");
}

#[test]
fn a_failed_snapshot_create_reports_the_tool_error_and_frees_the_slot() {
    let env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    env.fail(
        "dmsetup",
        "create",
        "device-mapper: reload ioctl on adt-bookworm-0 failed: Invalid argument",
    );
    let reply = a.call("CreateSnapshot", IMAGE);
    let Reply::Err { name, message } = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(name, errors::COMMAND_FAILED);
    assert!(message.contains("reload ioctl"), "{message}");
    assert!(env.ledger_names().is_empty());
    std::fs::remove_file(env.state().join("fail-dmsetup-create")).unwrap();
    assert_eq!(a.call("CreateSnapshot", IMAGE).ok(), SNAP0);
}

#[test]
fn sigterm_tears_everything_down_and_exits_zero() {
    let mut env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let mut b = Client::connect(&env.bus, Some(MEMBER_B));
    a.call("CreateSnapshot", IMAGE).ok();
    a.call("ResumeDomain", SNAP0).ok();
    let theirs = b.call("CreateSnapshot", IMAGE).ok();
    b.call("ResumeDomain", &theirs).ok();
    assert_eq!(env.existing("xl").len(), 2);
    let status = env.terminate(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}: {}", env.log());
    assert!(env.existing("xl").is_empty());
    assert!(env.existing("dm").is_empty());
    assert!(env.ledger_names().is_empty());
}

/// Parse a `CapXxx:` line of /proc/PID/status.
fn cap_line(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn the_running_daemon_holds_only_the_allowed_capabilities() {
    let env = PrivdEnv::start();
    // What the design allows, less what this host withholds from us (a
    // container may lack some capabilities in its own bounding set).
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = privileges::kept_mask() & cap_line(&ours, "CapBnd:");
    assert_ne!(allowed & (1 << 21), 0, "CAP_SYS_ADMIN must be kept");
    // Every thread, not only the main one: capabilities are per thread.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", env.pid())).unwrap();
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(
                cap_line(&status, key),
                allowed,
                "{key} {:#x} != {allowed:#x}",
                cap_line(&status, key)
            );
        }
        assert_eq!(cap_line(&status, "CapInh:"), 0);
        assert_eq!(cap_line(&status, "CapAmb:"), 0);
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["NoNewPrivs:", "1"])),
            "no_new_privs unset"
        );
        threads += 1;
    }
    assert!(threads > 1, "the runtime's threads must be checked too");
}

#[test]
fn the_systemd_unit_bounds_the_same_capabilities() {
    let unit =
        std::fs::read_to_string(project_root().join("debian/autopkgtest-xen.adt-privd.service"))
            .unwrap();
    let line = unit
        .lines()
        .find(|l| l.starts_with("CapabilityBoundingSet="))
        .expect("a CapabilityBoundingSet");
    let mut in_unit: Vec<&str> = line["CapabilityBoundingSet=".len()..]
        .split_whitespace()
        .collect();
    in_unit.sort();
    let mut kept = privileges::kept_names();
    kept.sort();
    assert_eq!(in_unit, kept);
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "Type=dbus",
    ] {
        assert!(
            unit.lines().any(|l| l == hardening),
            "unit lacks {hardening}"
        );
    }
    assert!(
        !unit.contains("PrivateDevices=yes"),
        "PrivateDevices hides /dev/mapper/control"
    );
}

#[test]
fn an_eight_megabyte_argument_is_refused_briefly_and_the_daemon_keeps_serving() {
    let mut env = PrivdEnv::start();
    let mut b = Client::connect(&env.bus, Some(MEMBER_B));
    b.call("CreateSnapshot", IMAGE).ok();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let before = env.calls();
    // Its error once echoed the whole argument: a reply over the bus's
    // message limit, which cut the daemon off the bus.
    let huge = "\x01".repeat(8 << 20);
    for method in [
        "CreateSnapshot",
        "RemoveSnapshot",
        "ResumeDomain",
        "DestroyDomain",
    ] {
        let reply = a.call(method, &huge);
        let Reply::Err { name, message } = &reply else {
            panic!("{method}: {reply:?}")
        };
        assert_eq!(name, errors::INVALID_ARGS, "{method}: {message}");
        assert!(message.len() < 600, "{method}: {} bytes", message.len());
        assert!(message.contains("8388608 bytes long"), "{message}");
    }
    assert_eq!(env.calls(), before, "an overlong call ran a tool");
    assert!(env.running(), "adt-privd died: {}", env.log());
    assert_eq!(env.existing("dm"), vec![SNAP0]);
    assert!(b.call("ListTestbeds", "").ok().contains(SNAP0));
}

/// The pid of the dbus-daemon run with the configuration in `dir`.
fn bus_daemon_pid(dir: &std::path::Path) -> i32 {
    let wanted = format!("--config-file={}", dir.join("bus.conf").display());
    for entry in std::fs::read_dir("/proc").unwrap() {
        let entry = entry.unwrap();
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == wanted.as_bytes())
        {
            return pid;
        }
    }
    panic!("no dbus-daemon with {wanted}");
}

#[test]
fn losing_the_bus_tears_everything_down_and_exits_non_zero() {
    let mut env = PrivdEnv::start();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    a.call("CreateSnapshot", IMAGE).ok();
    a.call("ResumeDomain", SNAP0).ok();
    let pid = bus_daemon_pid(env.bus.dir.path());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = env.wait_exit(Duration::from_secs(20));
    assert!(
        !status.success(),
        "a lost bus must be a failure (systemd restarts on failure): {status:?}\n{}",
        env.log()
    );
    assert!(env.existing("xl").is_empty());
    assert!(env.existing("dm").is_empty());
    assert!(env.ledger_names().is_empty());
}
