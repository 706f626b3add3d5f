//! adt-privd under test: a private bus and polkitd, the daemon itself with
//! a configuration of one image (`bookworm`, two slots) whose origin is a
//! real loop device, and stand-in dmsetup/xl (tests/stand-ins/) keeping
//! their state in a directory the test inspects.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use adt_privd::names::BUS_NAME;
use nix::sys::signal::Signal;

use crate::bins::binary;
use crate::bus::SystemBus;
use crate::polkit::Polkitd;
use crate::{kill, project_root, wait_for};

pub const IMAGE: &str = "bookworm";
pub const SLOTS: usize = 2;
/// Size of the loop-backed origin, in 512-byte sectors.
pub const ORIGIN_SECTORS: u64 = 16384;

/// A loop device over a sparse file, detached on drop.
pub struct LoopDevice {
    pub path: PathBuf,
}

impl LoopDevice {
    pub fn attach(file: &Path) -> LoopDevice {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        LoopDevice {
            path: PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("--detach")
            .arg(&self.path)
            .status();
    }
}

pub struct PrivdEnv {
    // Field order is drop order: the daemon before polkitd before the bus.
    child: Option<Child>,
    pub polkitd: Polkitd,
    pub bus: SystemBus,
    pub origin: LoopDevice,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl PrivdEnv {
    /// Bus, polkitd and adt-privd, ready to take calls.
    pub fn start() -> PrivdEnv {
        crate::users::ensure();
        let bus = SystemBus::start();
        let polkitd = Polkitd::start(&bus);
        let dir = tempfile::Builder::new()
            .prefix("adt-privd.")
            .tempdir()
            .unwrap();
        let origin_file = dir.path().join("origin.img");
        std::fs::File::create(&origin_file)
            .unwrap()
            .set_len(ORIGIN_SECTORS * 512)
            .unwrap();
        let origin = LoopDevice::attach(&origin_file);
        let config = dir.path().join("privd.toml");
        std::fs::write(&config, config_text(dir.path(), &origin.path)).unwrap();
        let mut env = PrivdEnv {
            child: None,
            polkitd,
            bus,
            origin,
            dir,
            config,
        };
        env.spawn();
        env
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger")
    }

    /// Start the daemon (again) and wait until it owns its name.
    pub fn spawn(&mut self) {
        let child = Command::new(binary("adt-privd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--bus")
            .arg(&self.bus.address)
            .env("ADT_PRIVD_LOG", "debug")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("privd.log")).unwrap())
            .spawn()
            .expect("adt-privd");
        self.child = Some(child);
        self.bus.wait_for_name(BUS_NAME, Duration::from_secs(20));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("adt-privd runs").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child, Signal::SIGKILL);
        }
    }

    /// SIGTERM, then wait (at most `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("adt-privd runs");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
        let mut status = None;
        wait_for("adt-privd to exit after SIGTERM", limit, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// Wait (at most `limit`) for the daemon to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("adt-privd runs");
        let mut status = None;
        wait_for("adt-privd to exit", limit, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// Whether the daemon is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Names of the stand-in devices (`dm`) or domains (`xl`) that exist.
    pub fn existing(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.state().join(kind))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every tool call made so far, one per line.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state().join("calls"))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Make the stand-in `tool` fail its `verb` with `stderr`.
    pub fn fail(&self, tool: &str, verb: &str, stderr: &str) {
        std::fs::write(self.state().join(format!("fail-{tool}-{verb}")), stderr).unwrap();
    }

    pub fn ledger_names(&self) -> Vec<String> {
        std::fs::read_dir(self.ledger())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("privd.log")).unwrap_or_default()
    }
}

impl Drop for PrivdEnv {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Wrapper scripts that run the stand-ins with this test's state dir.
fn stand_in(dir: &Path, tool: &str) -> PathBuf {
    let path = dir.join("bin").join(tool);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!(
        "#!/bin/sh\nADT_STANDIN_STATE={} exec {} \"$@\"\n",
        dir.join("state").display(),
        project_root().join("tests/stand-ins").join(tool).display()
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn config_text(dir: &Path, origin: &Path) -> String {
    let mut text = format!(
        "ledger_dir = \"{ledger}\"\n[tools]\ndmsetup = \"{dm}\"\nxl = \"{xl}\"\n\
         [limits]\nmax_per_uid = 4\ncommand_timeout = 20\nrestore_timeout = 30\n\
         [images.{IMAGE}]\norigin = \"{origin}\"\nchunk_sectors = 8\n",
        ledger = dir.join("ledger").display(),
        dm = stand_in(dir, "dmsetup").display(),
        xl = stand_in(dir, "xl").display(),
        origin = origin.display(),
    );
    std::fs::create_dir_all(dir.join("state")).unwrap();
    for slot in 0..SLOTS {
        let name = adt_privd::names::resource_name(IMAGE, slot);
        let cfg = dir.join(format!("{slot}.cfg"));
        let checkpoint = dir.join(format!("{slot}.checkpoint"));
        std::fs::write(
            &cfg,
            format!("name = \"{name}\"\ndisk = ['phy:/dev/mapper/{name},xvda,w']\nmemory = 256\n"),
        )
        .unwrap();
        std::fs::write(&checkpoint, b"checkpoint").unwrap();
        text += &format!(
            "[[images.{IMAGE}.slots]]\ncow = \"{cow}\"\ncheckpoint = \"{ck}\"\n\
             domain_config = \"{cfg}\"\naddress = \"10.99.0.{addr}\"\n",
            cow = dir.join(format!("cow{slot}")).display(),
            ck = checkpoint.display(),
            cfg = cfg.display(),
            addr = 10 + slot,
        );
    }
    text
}
