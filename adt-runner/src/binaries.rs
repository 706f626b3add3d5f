//! The debs built from the package under test, published to the testbed
//! as a local apt repository pinned above the archive, so that `@` installs
//! them (autopkgtest's `DebBinaries`).
//!
//! Not for: building them (`source`).

use std::path::PathBuf;

use crate::error::RunError;
use crate::output::Output;
use crate::session::{Kind, Session};
use crate::ssh::quote;

/// Built debs kept on the host, `<package>.deb` each (in `binaries/` of
/// the output directory, as autopkgtest keeps them).
pub struct Binaries {
    pub dir: PathBuf,
    pub registered: Vec<String>,
    published: bool,
}

impl Binaries {
    pub fn new(dir: PathBuf) -> Self {
        Binaries {
            dir,
            registered: Vec::new(),
            published: false,
        }
    }

    /// Copies the debs into the testbed and makes apt prefer them;
    /// reinstalls any of them already installed.
    pub fn publish(&mut self, sess: &Session, out: &Output) -> Result<(), RunError> {
        if self.registered.is_empty() {
            return Ok(());
        }
        self.published = true;
        let tb = format!("{}/binaries", sess.scratch);
        sess.check(&format!("rm -rf {}", quote(&tb)))?;
        sess.copy_down(&self.dir, &tb)?;
        let script = format!(
            r#"type apt-ftparchive >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y apt-utils 2>&1
(cd {d}; apt-ftparchive packages . > Packages; apt-ftparchive release . > Release)
printf 'Package: *\nPin: origin ""\nPin-Priority: 1002\n' > /etc/apt/preferences.d/90autopkgtest
echo "deb [ trusted=yes ] file://{d} /" >/etc/apt/sources.list.d/autopkgtest.list
apt-get --quiet --no-list-cleanup -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/autopkgtest.list -o Dir::Etc::sourceparts=/dev/null update 2>&1"#,
            d = tb
        );
        let (exit, err) = sess.exec_shown(&format!("set -e\n{script}"), Kind::Install, out)?;
        if exit.code != 0 {
            return Err(RunError::Error(format!(
                "publishing built binaries failed with status {}: {}",
                exit.code,
                String::from_utf8_lossy(&err).trim()
            )));
        }
        self.reinstall(sess, out)
    }

    /// Removes the repository again from a testbed that cannot revert.
    pub fn reset(&mut self, sess: &Session, out: &Output) -> Result<(), RunError> {
        if !self.published || sess.caps.contains("revert") {
            return Ok(());
        }
        out.info("Binaries: resetting testbed apt configuration");
        let script =
            "rm -f /etc/apt/sources.list.d/autopkgtest.list /etc/apt/preferences.d/90autopkgtest; \
                      (apt-get --quiet update || (sleep 15; apt-get update)) 2>&1";
        sess.exec_shown(script, Kind::Install, out)?;
        self.published = false;
        Ok(())
    }

    fn reinstall(&self, sess: &Session, out: &Output) -> Result<(), RunError> {
        let q: Vec<String> = self.registered.iter().map(|p| quote(p)).collect();
        let (_, installed, _) = sess.capture(
            &format!("dpkg-query --show -f '${{Package}} ${{Status}}\\n' {} 2>/dev/null | awk '$2 == \"install\" {{ print $1 }}'", q.join(" ")),
            Kind::Short,
        )?;
        let installed = String::from_utf8_lossy(&installed)
            .split_whitespace()
            .map(quote)
            .collect::<Vec<_>>();
        if installed.is_empty() {
            return Ok(());
        }
        let cmd = format!(
            "apt-get --quiet -o Debug::pkgProblemResolver=true -o APT::Get::force-yes=true -o APT::Get::Assume-Yes=true --reinstall install {}",
            installed.join(" ")
        );
        let (exit, _) = sess.exec_shown(&cmd, Kind::Install, out)?;
        if exit.code != 0 {
            return Err(RunError::BadPkg(format!(
                "installation of basic binaries failed, exit code {}",
                exit.code
            )));
        }
        Ok(())
    }
}
