//! The debs built from the package under test, published to the testbed
//! as a local apt repository pinned above the archive, so that `@` installs
//! them (autopkgtest's `DebBinaries`).
//!
//! Not for: building them (`source`).

use std::path::{Path, PathBuf};

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
    /// apt-utils' deb, fetched from the testbed's archive before a revert,
    /// so that publishing into the reverted testbed installs it with dpkg
    /// instead of a whole apt run (see `start_apt_utils_fetch`).
    apt_utils: Option<PathBuf>,
    /// The testbed directory of a fetch of it still running.
    fetching: Option<String>,
}

impl Binaries {
    pub fn new(dir: PathBuf) -> Self {
        Binaries {
            dir,
            registered: Vec::new(),
            published: false,
            apt_utils: None,
            fetching: None,
        }
    }

    /// Publishing needs apt-ftparchive, which autopkgtest installs with
    /// `apt-get install apt-utils` into every testbed that lacks it, after
    /// every revert. When the testbed lacks it and will be reverted before
    /// publishing (the caller knows it will publish), this fetches the deb
    /// that command would install (same indexes: the built binaries are not
    /// published yet), so that `publish` can install it with dpkg: the same
    /// package in the same state, without apt's cache rebuild, resolution
    /// and download. Only a speed-up: when the fetch fails, publishing uses
    /// apt as autopkgtest does.
    ///
    /// The fetch runs in the background in the testbed (a download, mostly
    /// waiting on the network), so that the build runs meanwhile;
    /// `finish_apt_utils_fetch` waits for it and copies the deb out. Called
    /// after the build dependencies are installed: apt's cache is built
    /// then, and no other apt command runs until the finish, which the
    /// caller reaches also when the build fails. The directory it leaves
    /// in the scratch area is gone with the revert that always follows.
    pub fn start_apt_utils_fetch(&mut self, sess: &Session) -> Result<(), RunError> {
        if self.apt_utils.is_some()
            || self.fetching.is_some()
            || sess.has_apt_ftparchive
            || !sess.can_revert()
        {
            return Ok(());
        }
        let d = format!("{}/apt-utils-deb", sess.scratch);
        // Not when it recommends anything: apt would install that too.
        // (Its dependencies are apt's own; `publish` copes with one missing.)
        // `rc` appears only once the fetch has ended, with its status;
        // `pid` tells the wait whether it is still running (it may have
        // been killed before writing `rc`).
        let fetch = format!(
            "cd {d} && apt-get download -q apt-utils >/dev/null 2>&1 \
             && [ -z \"$(dpkg-deb --field apt-utils_*.deb Recommends)\" ] && ls apt-utils_*.deb >name; \
             echo $? >rc.new && mv rc.new rc",
            d = quote(&d)
        );
        let script = format!(
            "rm -rf {d} && mkdir -p {d} && (chown _apt {d} 2>/dev/null || true) \
             && {{ nohup sh -c {fetch} </dev/null >/dev/null 2>&1 & echo $! >{d}/pid; }}",
            d = quote(&d),
            fetch = quote(&fetch)
        );
        let (exit, _, _) = sess.capture(&script, Kind::Short)?;
        if exit.code == 0 {
            self.fetching = Some(d);
        } else {
            tracing::debug!("apt-utils fetch not started (exit {})", exit.code);
        }
        Ok(())
    }

    /// Waits (within the install timeout) for the fetch that
    /// `start_apt_utils_fetch` started to end, or to be gone, and copies
    /// the deb into `host_dir`.
    /// A failed or unfinished fetch only means `publish` uses apt.
    pub fn finish_apt_utils_fetch(
        &mut self,
        sess: &Session,
        host_dir: &Path,
    ) -> Result<(), RunError> {
        let Some(d) = self.fetching.take() else {
            return Ok(());
        };
        let script = format!(
            "cd {} && while [ ! -e rc ] && kill -0 \"$(cat pid)\" 2>/dev/null; do sleep 0.05; done; [ \"$(cat rc)\" = 0 ] && cat name",
            quote(&d)
        );
        let (exit, listed, _) = sess.capture(&script, Kind::Install)?;
        let listed = String::from_utf8_lossy(&listed);
        let name = listed.trim();
        if exit.code != 0 || name.is_empty() || name.contains(char::is_whitespace) {
            tracing::debug!("apt-utils not prefetched (exit {})", exit.code);
            return Ok(());
        }
        std::fs::create_dir_all(host_dir)
            .map_err(|e| RunError::Error(format!("cannot create {}: {e}", host_dir.display())))?;
        let host = host_dir.join("apt-utils.deb");
        sess.copy_up(&format!("{d}/{name}"), &host, false)?;
        self.apt_utils = Some(host);
        Ok(())
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
        // With a prefetched apt-utils deb, dpkg installs it. Should dpkg
        // stop half-way (the testbed was not as the prefetch saw it: a
        // dependency missing), apt completes it (`--fix-broken` pulls the
        // dependencies in, marked automatic, as `apt-get install apt-utils`
        // would), and apt-utils is installed by apt if still missing.
        let dpkg_first = match &self.apt_utils {
            Some(host) => {
                let deb = format!("{}/apt-utils.deb", sess.scratch);
                sess.copy_down(host, &deb)?;
                format!(
                    "{{ dpkg -i {} 2>&1 || {{ apt-get install -y --fix-broken 2>&1; type apt-ftparchive >/dev/null 2>&1; }}; }} || ",
                    quote(&deb)
                )
            }
            None => String::new(),
        };
        let script = format!(
            r#"type apt-ftparchive >/dev/null 2>&1 || {dpkg_first}DEBIAN_FRONTEND=noninteractive apt-get install -y apt-utils 2>&1
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
        if !self.published || sess.can_revert() {
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
            "apt-get --quiet -o APT::Get::force-yes=true -o APT::Get::Assume-Yes=true --reinstall install {}",
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
