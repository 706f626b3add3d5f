//! The `xen:IMAGE` testbed: a snapshot and a resumed domain obtained from
//! adt-privd over D-Bus (system bus, or DBUS_SYSTEM_BUS_ADDRESS), reverted
//! by destroying both and taking fresh ones.
//!
//! Not for: anything privileged; adt-privd does that and checks polkit.

use std::collections::BTreeSet;
use std::path::PathBuf;

use adt_privd::Xen1Proxy;

use crate::ssh::Ssh;
use crate::testbed::{parse_address, Testbed, TestbedError, SSH_WAIT};

/// A domain on a snapshot of `image`.
pub struct XenTestbed {
    image: String,
    identity: Option<PathBuf>,
    user: String,
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
    snapshot: Option<String>,
    domain: Option<String>,
    ssh: Option<Ssh>,
}

fn dbus_err(what: &str, e: impl std::fmt::Display) -> TestbedError {
    TestbedError::Other(format!("adt-privd {what} failed: {e}"))
}

impl XenTestbed {
    /// Takes a snapshot of `image`, resumes a domain on it and logs in.
    pub fn open(image: &str, user: &str, identity: Option<PathBuf>) -> Result<Self, TestbedError> {
        if !adt_privd::is_valid_name(image) {
            return Err(TestbedError::Other(format!("invalid image name {image:?}")));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestbedError::Other(format!("tokio runtime: {e}")))?;
        let conn = rt
            .block_on(zbus::Connection::system())
            .map_err(|e| dbus_err("connection to the system bus", e))?;
        let mut tb = XenTestbed {
            image: image.to_string(),
            identity,
            user: user.to_string(),
            rt,
            conn,
            snapshot: None,
            domain: None,
            ssh: None,
        };
        if let Err(e) = tb.bring_up() {
            let _ = tb.stop();
            return Err(e);
        }
        Ok(tb)
    }

    fn bring_up(&mut self) -> Result<(), TestbedError> {
        let (snapshot, domain, address) = self.rt.block_on(async {
            let proxy = Xen1Proxy::new(&self.conn)
                .await
                .map_err(|e| dbus_err("proxy", e))?;
            let snapshot = proxy
                .create_snapshot(&self.image)
                .await
                .map_err(|e| dbus_err("CreateSnapshot", e))?;
            match proxy.resume_domain(&snapshot).await {
                Ok((d, a)) => Ok((snapshot, d, a)),
                Err(e) => {
                    let _ = proxy.remove_snapshot(&snapshot).await;
                    Err(dbus_err("ResumeDomain", e))
                }
            }
        })?;
        tracing::info!(%snapshot, %domain, %address, "xen testbed up");
        self.snapshot = Some(snapshot);
        self.domain = Some(domain);
        let spec = if address.contains('@') {
            address
        } else {
            format!("{}@{address}", self.user)
        };
        let target = parse_address(&spec, self.identity.clone()).map_err(TestbedError::Other)?;
        let ssh = Ssh::connect(&target, SSH_WAIT)?;
        make_root_writable(&ssh)?;
        self.ssh = Some(ssh);
        Ok(())
    }

    fn tear_down(&mut self) -> Result<(), TestbedError> {
        self.ssh = None;
        let (domain, snapshot) = (self.domain.take(), self.snapshot.take());
        self.rt.block_on(async {
            let proxy = Xen1Proxy::new(&self.conn)
                .await
                .map_err(|e| dbus_err("proxy", e))?;
            if let Some(d) = domain {
                proxy
                    .destroy_domain(&d)
                    .await
                    .map_err(|e| dbus_err("DestroyDomain", e))?;
            }
            if let Some(s) = snapshot {
                proxy
                    .remove_snapshot(&s)
                    .await
                    .map_err(|e| dbus_err("RemoveSnapshot", e))?;
            }
            Ok(())
        })
    }
}

/// The image contract (docs/adt-xen-image.md): a slot's checkpoint is made with
/// the root file system mounted read-only, so the memory image describes
/// exactly the origin a fresh snapshot shows; the first writer after a
/// resume is the runner, which remounts it read-write here.
const REMOUNT_RW: &str =
    "if awk '$2 == \"/\" && $4 ~ /(^|,)ro(,|$)/ { found = 1 } END { exit !found }' /proc/mounts; \
     then mount -o remount,rw / || { echo 'cannot remount / read-write' >&2; exit 1; }; fi";

fn make_root_writable(ssh: &Ssh) -> Result<(), TestbedError> {
    let out = ssh.output(REMOUNT_RW)?;
    if out.exit.code != 0 {
        return Err(TestbedError::Other(format!(
            "testbed {}: making / writable failed (exit {}): {}",
            ssh.target(),
            out.exit.code,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Testbed for XenTestbed {
    fn ssh(&self) -> &Ssh {
        self.ssh.as_ref().expect("xen testbed is up")
    }

    fn is_up(&self) -> bool {
        self.ssh.is_some()
    }

    fn caps(&self) -> BTreeSet<String> {
        [
            "revert",
            "revert-full-system",
            "isolation-container",
            "isolation-machine",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    fn revert(&mut self) -> Result<(), TestbedError> {
        self.tear_down()?;
        self.bring_up()
    }

    fn describe(&self) -> String {
        format!("xen:{}", self.image)
    }

    fn stop(&mut self) -> Result<(), TestbedError> {
        self.tear_down()
    }
}

impl Drop for XenTestbed {
    fn drop(&mut self) {
        if self.snapshot.is_some() || self.domain.is_some() {
            let _ = self.tear_down();
        }
    }
}
