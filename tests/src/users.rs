//! Real unprivileged users for authorisation tests, created once (and
//! idempotently) on the test host: two members of the group `autopkgtest`
//! and one outsider. Their names say what they are for.

use std::process::Command;
use std::sync::Once;

pub const GROUP: &str = "autopkgtest";
/// In the group: authorised by the example polkit rules.
pub const MEMBER_A: &str = "adt-test-a";
pub const MEMBER_B: &str = "adt-test-b";
/// Not in the group: polkit says no.
pub const OUTSIDER: &str = "adt-test-out";

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

fn exists(user: &str) -> bool {
    nix::unistd::User::from_name(user).ok().flatten().is_some()
}

/// Create the group and the three users if they are missing.
pub fn ensure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        run("groupadd", &["-f", "--system", GROUP]);
        for (user, member) in [(MEMBER_A, true), (MEMBER_B, true), (OUTSIDER, false)] {
            if !exists(user) {
                let mut args = vec![
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ];
                if member {
                    args.extend(["--groups", GROUP]);
                }
                args.push(user);
                run("useradd", &args);
            }
        }
    });
}

pub fn uid(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .expect("user exists")
        .uid
        .as_raw()
}
