//! A private system bus: a real dbus-daemon started from Debian's
//! /usr/share/dbus-1/system.conf with its listen address moved to a
//! temporary socket, its user/fork/pidfile/activation lines removed, its
//! relative includedir made absolute, and the project's own policy file
//! (dbus/org.autopkgtest.Xen1.conf) included: so the policy itself is
//! under test.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{kill, project_root, wait_for};

pub struct SystemBus {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub address: String,
    child: Child,
}

/// Debian's system bus configuration, made private to `socket`.
pub fn bus_config(socket: &std::path::Path) -> String {
    let debian = std::fs::read_to_string("/usr/share/dbus-1/system.conf")
        .expect("/usr/share/dbus-1/system.conf (package dbus) must be installed");
    let policy = project_root().join("dbus/org.autopkgtest.Xen1.conf");
    let mut out = String::new();
    for line in debian.lines() {
        let t = line.trim();
        let dropped = [
            "<user>",
            "<fork/>",
            "<pidfile>",
            "<servicehelper>",
            "<standard_system_servicedirs/>",
        ];
        if dropped.iter().any(|d| t.starts_with(d)) {
            continue;
        }
        if t.starts_with("<listen>") {
            out += &format!("  <listen>unix:path={}</listen>\n", socket.display());
        } else if t == "<includedir>system.d</includedir>" {
            out += "  <includedir>/usr/share/dbus-1/system.d</includedir>\n";
        } else if t == "</busconfig>" {
            out += &format!("  <include>{}</include>\n</busconfig>\n", policy.display());
        } else {
            out += line;
            out += "\n";
        }
    }
    out
}

impl SystemBus {
    pub fn start() -> SystemBus {
        let dir = tempfile::Builder::new()
            .prefix("adt-bus.")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("system_bus_socket");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&socket)).unwrap();
        let child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog"])
            .stdin(Stdio::null())
            .spawn()
            .expect("dbus-daemon (package dbus) must be installed");
        let mut bus = SystemBus {
            address: format!("unix:path={}", socket.display()),
            socket,
            dir,
            child,
        };
        let socket = bus.socket.clone();
        let child = &mut bus.child;
        wait_for("the bus socket", Duration::from_secs(10), || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "dbus-daemon exited at start"
            );
            UnixStream::connect(&socket).is_ok()
        });
        bus
    }

    /// Whether `name` has an owner on this bus.
    pub async fn has_owner(&self, name: &str) -> bool {
        let Ok(builder) = zbus::connection::Builder::address(self.address.as_str()) else {
            return false;
        };
        let Ok(conn) = builder.build().await else {
            return false;
        };
        let Ok(dbus) = zbus::fdo::DBusProxy::new(&conn).await else {
            return false;
        };
        let Ok(name) = zbus::names::BusName::try_from(name) else {
            return false;
        };
        dbus.name_has_owner(name).await.unwrap_or(false)
    }

    /// Block until `name` is owned (by a service we started).
    pub fn wait_for_name(&self, name: &str, limit: Duration) -> Duration {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        wait_for(name, limit, || rt.block_on(self.has_owner(name)))
    }
}

impl Drop for SystemBus {
    fn drop(&mut self) {
        kill(&mut self.child, nix::sys::signal::Signal::SIGTERM);
    }
}
