//! Test support: an in-memory host that answers `lvs`, `vgs`, `dmsetup
//! info`, `xl domid` and friends from a small table, applies the commands
//! that change it (lvcreate, dmsetup create/remove, xl create/save/destroy)
//! and records every call; and a lab of real files in a temp directory.
//!
//! Not for: production (compiled only for tests).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::build::Options;
use crate::error::Result;
use crate::host::{show, Host, Output};
use crate::spec::Spec;

/// What the fake host has, and how it answers.
#[derive(Debug, Clone)]
pub struct World {
    pub vgs: BTreeSet<String>,
    /// `VG/LV`.
    pub lvs: BTreeSet<String>,
    pub dm: BTreeSet<String>,
    pub domains: BTreeSet<String>,
    /// `dmsetup info -o open` answers, by dm name (default 0).
    pub open: BTreeMap<String, u32>,
    pub xen: bool,
    pub bridges: BTreeSet<String>,
    pub ssh_up: bool,
    pub root_read_only: bool,
    /// Whether the roots mounted or debootstrapped have systemd.
    pub root_has_systemd: bool,
    pub origin_bytes: u64,
    pub fs_uuid: String,
    /// Commands (as shown) starting with one of these fail.
    pub failing: Vec<String>,
}

impl Default for World {
    fn default() -> World {
        World {
            vgs: BTreeSet::from(["adt".into()]),
            lvs: BTreeSet::new(),
            dm: BTreeSet::new(),
            domains: BTreeSet::new(),
            open: BTreeMap::new(),
            xen: true,
            bridges: BTreeSet::from(["xenbr0".into()]),
            ssh_up: true,
            root_read_only: true,
            root_has_systemd: true,
            origin_bytes: 3 << 30,
            fs_uuid: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
            failing: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
pub struct FakeHost {
    pub world: RefCell<World>,
    /// `query: ...` and `run: ...` lines, in order.
    pub calls: RefCell<Vec<String>>,
    pub dry: bool,
}

impl FakeHost {
    pub fn with(world: World) -> FakeHost {
        FakeHost {
            world: RefCell::new(world),
            ..FakeHost::default()
        }
    }

    pub fn dry() -> FakeHost {
        FakeHost {
            dry: true,
            ..FakeHost::default()
        }
    }

    /// The commands that changed (or would change) the host.
    pub fn runs(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| c.strip_prefix("run: ").map(str::to_owned))
            .collect()
    }

    pub fn ran(&self, prefix: &str) -> usize {
        self.runs().iter().filter(|r| r.starts_with(prefix)).count()
    }

    fn answer(&self, argv: &[&str]) -> Output {
        let shown = show(argv);
        let mut w = self.world.borrow_mut();
        if w.failing.iter().any(|f| shown.starts_with(f.as_str())) {
            return Output::failure("fake failure");
        }
        let last = argv.last().copied().unwrap_or_default();
        let yes = |b: bool| {
            if b {
                Output::success("")
            } else {
                Output::failure("not found")
            }
        };
        match argv {
            ["vgs", ..] => yes(w.vgs.contains(last)),
            ["lvs", ..] => yes(w.lvs.contains(last)),
            ["lvcreate", .., "-n", lv, vg] => {
                w.lvs.insert(format!("{vg}/{lv}"));
                Output::success("")
            }
            ["vgcreate", "-q", vg, _] => {
                w.vgs.insert((*vg).into());
                Output::success("")
            }
            ["dmsetup", "info", "-c", .., name] => {
                Output::success(&format!("  {}\n", w.open.get(*name).copied().unwrap_or(0)))
            }
            ["dmsetup", "info", name] => yes(w.dm.contains(*name)),
            ["dmsetup", "create", name, ..] => yes(w.dm.insert((*name).into())),
            ["dmsetup", "remove", .., name] => yes(w.dm.remove(*name)),
            ["xl", "info"] => yes(w.xen),
            ["xl", "domid", name] => yes(w.domains.contains(*name)),
            ["xl", "create", "-q", cfg] => {
                let name = domain_name(Path::new(cfg));
                yes(w.domains.insert(name))
            }
            ["xl", "save", name, file] => {
                let saved = w.domains.remove(*name) && std::fs::write(file, "saved").is_ok();
                yes(saved)
            }
            ["xl", "destroy", name] => yes(w.domains.remove(*name)),
            ["ip", "link", "show", bridge] => yes(w.bridges.contains(*bridge)),
            // What a Debian root has, where a mount or debootstrap puts it.
            ["mount", "-t", "ext4", _, dir] | ["debootstrap", .., dir, _] => {
                let init = Path::new(dir).join(crate::layout::TESTBED_INIT.trim_start_matches('/'));
                let made = !w.root_has_systemd
                    || std::fs::create_dir_all(init.parent().unwrap())
                        .and_then(|()| std::fs::write(&init, "ELF"))
                        .is_ok();
                yes(made)
            }
            ["blockdev", "--getsz", _] => Output::success(&format!("{}\n", w.origin_bytes / 512)),
            ["blockdev", "--getsize64", _] => Output::success(&format!("{}\n", w.origin_bytes)),
            ["dumpe2fs", "-h", _] => Output::success(&format!(
                "Filesystem volume name:   testbed-root\nFilesystem UUID:          {}\n\
                 Filesystem created:       Sun Nov 22 10:00:00 2026\n",
                w.fs_uuid
            )),
            ["ssh", .., command] if command.contains("/proc/mounts") => yes(w.root_read_only),
            ["ssh", ..] => yes(w.ssh_up),
            _ => Output::success(""),
        }
    }
}

fn domain_name(cfg: &Path) -> String {
    let text = std::fs::read_to_string(cfg).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"').to_owned())
        .unwrap_or_default()
}

impl Host for FakeHost {
    fn query(&self, argv: &[&str], _timeout: Duration) -> Result<Output> {
        self.calls
            .borrow_mut()
            .push(format!("query: {}", show(argv)));
        Ok(self.answer(argv))
    }

    fn run(&self, argv: &[&str], _timeout: Duration) -> Result<Output> {
        self.calls.borrow_mut().push(format!("run: {}", show(argv)));
        if self.dry {
            return Ok(Output::success(""));
        }
        Ok(self.answer(argv))
    }

    fn tcp_open(&self, _address: &str, _port: u16, _timeout: Duration) -> bool {
        self.world.borrow().ssh_up
    }

    fn which(&self, tool: &str) -> Option<PathBuf> {
        Some(PathBuf::from("/usr/sbin").join(tool))
    }

    fn dry_run(&self) -> bool {
        self.dry
    }
}

/// The spec the docs show, with fixed paths (for pure functions).
pub fn spec() -> Spec {
    Spec::parse(
        &spec_text(Path::new("/nonexistent")),
        Path::new("image.toml"),
    )
    .expect("the test spec is valid")
}

/// A spec whose input files live under `base` (made by `Lab`), state_dir
/// fixed unless `base` is a real lab.
pub fn spec_text(base: &Path) -> String {
    let state = if base == Path::new("/nonexistent") {
        PathBuf::from("/var/lib/autopkgtest-xen/bookworm")
    } else {
        base.join("state")
    };
    format!(
        r#"image = "bookworm"
volume_group = "adt"
physical_volume = "/dev/vdb"
slots = 2
cow_size = "1G"
state_dir = "{state}"

[root]
from_image = "{base}/domu.img"
authorized_key = "{base}/id_ed25519.pub"

[domain]
kernel = "{base}/vmlinux"
ramdisk = "{base}/initrd.cpio"
extra = "console=hvc0 quiet"

[network]
first_address = "10.99.0.10"
prefix_len = 24
gateway = "10.99.0.1"
dns = "10.0.2.3"
mac_prefix = "00:16:3e:99:00"

[ssh]
key = "{base}/id_ed25519"
timeout = 1
"#,
        state = state.display(),
        base = base.display()
    )
}

/// Real input files and a state directory in a temp dir.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub spec: Spec,
    pub options: Options,
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::tempdir().expect("a temp dir");
        let base = dir.path();
        let write = |name: &str, text: &str| std::fs::write(base.join(name), text).expect("write");
        write("domu.img", "an ext4 image");
        write(
            "id_ed25519.pub",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA runner@dom0\n",
        );
        write("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n");
        write("vmlinux", "kernel 1");
        write("initrd.cpio", "initrd 1");
        let spec = Spec::parse(&spec_text(base), Path::new("image.toml")).expect("valid spec");
        let options = Options {
            create_volumes: false,
            refill_origin: false,
            privd_config: base.join("etc/privd.toml"),
        };
        Lab { dir, spec, options }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn state(&self, name: &str) -> PathBuf {
        self.spec.state_dir.join(name)
    }

    /// A world in which every volume of the spec exists.
    pub fn world_with_volumes(&self) -> World {
        let mut w = World::default();
        w.lvs.insert("adt/bookworm-origin".into());
        for slot in 0..self.spec.slots {
            w.lvs.insert(format!("adt/bookworm-cow{slot}"));
        }
        w
    }
}
