//! A real polkitd on a private bus, seeing only the project's action file
//! (polkit/org.autopkgtest.xen.policy) and rules file
//! (polkit/50-autopkgtest-xen.rules). It runs in its own mount namespace
//! with temporary directories bind-mounted over /usr/share/polkit-1/actions
//! and /etc/polkit-1/rules.d, so the host's configuration is untouched.

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bus::SystemBus;
use crate::{kill, project_root};

pub const POLKITD: &str = "/usr/lib/polkit-1/polkitd";

pub struct Polkitd {
    _dir: tempfile::TempDir,
    child: Child,
}

impl Polkitd {
    pub fn start(bus: &SystemBus) -> Polkitd {
        let dir = tempfile::Builder::new()
            .prefix("adt-polkit.")
            .tempdir()
            .unwrap();
        let actions = dir.path().join("actions");
        let rules = dir.path().join("rules.d");
        std::fs::create_dir(&actions).unwrap();
        std::fs::create_dir(&rules).unwrap();
        let root = project_root();
        std::fs::copy(
            root.join("polkit/org.autopkgtest.xen.policy"),
            actions.join("org.autopkgtest.xen.policy"),
        )
        .unwrap();
        std::fs::copy(
            root.join("polkit/50-autopkgtest-xen.rules"),
            rules.join("50-autopkgtest-xen.rules"),
        )
        .unwrap();
        for d in [dir.path(), &actions, &rules] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = format!(
            "mount --bind {a} /usr/share/polkit-1/actions && mount --bind {r} /etc/polkit-1/rules.d \
             && exec {POLKITD} --no-debug",
            a = actions.display(),
            r = rules.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) must be installed");
        let polkitd = Polkitd { _dir: dir, child };
        bus.wait_for_name("org.freedesktop.PolicyKit1", Duration::from_secs(20));
        polkitd
    }
}

impl Drop for Polkitd {
    fn drop(&mut self) {
        kill(&mut self.child, nix::sys::signal::Signal::SIGTERM);
    }
}
