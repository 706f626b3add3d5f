//! The testbed's root filesystem: what makes a Debian tree a testbed
//! (systemd as init, with a unit that sets the network up from the kernel
//! command line; the runner's key; a read-only fstab; /run-backed hostname,
//! hosts and resolv.conf; a machine id; apt's timers masked; sshd settings;
//! apt sources), applied to any directory: the mounted origin, or a
//! directory of the admin's (`prepare-root`).
//!
//! Not for: mounting, volumes or stamps (`origin`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{io, Error, Result};
use crate::files::fnv64;
use crate::host::{run_ok, timeout, Host};
use crate::layout::TESTBED_INIT;
use crate::spec::{Debootstrap, Source, Spec};

/// Sets the testbed's network and names from the kernel command line.
pub const NET_SCRIPT: &str = include_str!("../data/testbed-net");
pub const NET_SCRIPT_PATH: &str = "usr/lib/autopkgtest-xen/testbed-net";
/// The oneshot unit that runs it before sshd.
pub const NET_UNIT: &str = include_str!("../data/adt-testbed-net.service");
const NET_UNIT_NAME: &str = "adt-testbed-net.service";

/// Units that would change a testbed behind the tests' back.
const MASKED_UNITS: &[&str] = &["apt-daily.timer", "apt-daily-upgrade.timer"];

pub const SSHD_CONF: &str = "\
# written by adt-xen-image: a testbed is reached by key only, from the host
# that runs it; no reverse DNS (the host may not answer for testbeds)
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
PrintLastLog no
";

/// The root stays read-only until the runner remounts it after a resume.
pub const FSTAB: &str = "/dev/xvda / ext4 ro,errors=remount-ro 0 1\n";

/// Packages the testbed's boot and the runner need, always debootstrapped.
pub const REQUIRED_PACKAGES: &[&str] = &["systemd-sysv", "openssh-server", "iproute2"];

/// Bump when `configure_root` writes something different, so that origins
/// configured by an older version are configured again.
const RECIPE_VERSION: &str = "2";

/// Files under /etc that testbed-net writes into /run at every boot.
const RUN_LINKS: &[(&str, &str)] = &[
    ("etc/hostname", "/run/hostname"),
    ("etc/resolv.conf", "/run/resolv.conf"),
    ("etc/hosts", "/run/hosts"),
];

/// What to put into a root besides the fixed files.
pub struct RootConfig<'a> {
    /// The contents of the runner's public key file.
    pub authorized_key: &'a str,
    /// Debootstrapped roots get apt sources and package lists.
    pub apt: Option<&'a Debootstrap>,
}

impl<'a> RootConfig<'a> {
    pub fn new(spec: &'a Spec, authorized_key: &'a str) -> RootConfig<'a> {
        let apt = match spec.root.source() {
            Source::Debootstrap(d) => Some(d),
            Source::Image(_) => None,
        };
        RootConfig {
            authorized_key,
            apt,
        }
    }

    /// Identifies everything `configure_root` would write (for the stamp).
    pub fn hash(&self) -> String {
        let sources = self.apt.map(sources_text).unwrap_or_default();
        fnv64(&[
            RECIPE_VERSION.as_bytes(),
            NET_SCRIPT.as_bytes(),
            NET_UNIT.as_bytes(),
            SSHD_CONF.as_bytes(),
            FSTAB.as_bytes(),
            self.authorized_key.as_bytes(),
            sources.as_bytes(),
        ])
    }
}

/// Read the public key file and check it looks like one.
pub fn read_authorized_key(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let looks_right = text
        .lines()
        .any(|l| l.starts_with("ssh-") || l.starts_with("ecdsa-") || l.starts_with("sk-"));
    if !looks_right || text.contains("PRIVATE KEY") {
        return Err(Error::Spec {
            path: path.to_owned(),
            key: "root.authorized_key".into(),
            message: "is not an OpenSSH public key (ssh-ed25519 ..., ssh-rsa ...)".into(),
        });
    }
    Ok(text)
}

/// Make the tree at `dir` a testbed root. Idempotent. With apt sources,
/// runs `apt-get update` in a chroot (proc mounted for it) so the testbed
/// has package lists.
pub fn configure_root(dir: &Path, config: &RootConfig, host: &dyn Host) -> Result<()> {
    if host.dry_run() {
        println!(
            "adt-xen-image: would configure {} as a testbed root (/{NET_SCRIPT_PATH} and \
             {NET_UNIT_NAME}, /root/.ssh/authorized_keys, /etc/fstab, /run links, \
             machine id, masked apt timers, sshd settings{})",
            dir.display(),
            if config.apt.is_some() {
                ", apt sources and lists"
            } else {
                ""
            }
        );
        return Ok(());
    }
    let init = dir.join(TESTBED_INIT.trim_start_matches('/'));
    if fs::symlink_metadata(&init).is_err() {
        return Err(Error::Missing {
            what: "systemd in the testbed root (a testbed boots systemd as a real machine: \
                   install systemd-sysv in the image)",
            path: init,
        });
    }
    install(&dir.join(NET_SCRIPT_PATH), NET_SCRIPT.as_bytes(), 0o755)?;
    let units = dir.join("etc/systemd/system");
    install(&units.join(NET_UNIT_NAME), NET_UNIT.as_bytes(), 0o644)?;
    let wanted = format!("/etc/systemd/system/{NET_UNIT_NAME}");
    symlink(
        &wanted,
        &units.join("multi-user.target.wants").join(NET_UNIT_NAME),
    )?;
    for unit in MASKED_UNITS {
        symlink("/dev/null", &units.join(unit))?;
    }
    machine_id(dir)?;
    let ssh_dir = dir.join("root/.ssh");
    fs::create_dir_all(&ssh_dir).map_err(io("create directory", &ssh_dir))?;
    set_mode(&ssh_dir, 0o700)?;
    let key = with_newline(config.authorized_key);
    install(&ssh_dir.join("authorized_keys"), key.as_bytes(), 0o600)?;
    for (link, target) in RUN_LINKS {
        symlink(target, &dir.join(link))?;
    }
    install(&dir.join("etc/fstab"), FSTAB.as_bytes(), 0o644)?;
    let sshd = dir.join("etc/ssh/sshd_config.d/autopkgtest-xen.conf");
    install(&sshd, SSHD_CONF.as_bytes(), 0o644)?;
    if let Some(apt) = config.apt {
        let sources = dir.join("etc/apt/sources.list.d/debian.sources");
        install(&sources, sources_text(apt).as_bytes(), 0o644)?;
        // debootstrap's one-line list would repeat the same suite
        let list = dir.join("etc/apt/sources.list");
        if list.exists() {
            fs::remove_file(&list).map_err(io("remove", &list))?;
        }
        apt_update(dir, host)?;
    }
    Ok(())
}

/// `debootstrap --variant=minbase` of the spec's suite into `dir`.
pub fn debootstrap(dir: &Path, d: &Debootstrap, host: &dyn Host) -> Result<()> {
    let mut include: Vec<&str> = REQUIRED_PACKAGES.to_vec();
    include.extend(
        d.include
            .iter()
            .map(String::as_str)
            .filter(|p| !REQUIRED_PACKAGES.contains(p)),
    );
    let include = format!("--include={}", include.join(","));
    let components = format!("--components={}", d.components.join(","));
    let dir = dir.to_string_lossy();
    run_ok(
        host,
        &[
            "debootstrap",
            "--variant=minbase",
            &include,
            &components,
            &d.suite,
            &dir,
            &d.mirror,
        ],
        timeout::FILL,
    )
    .map(drop)
}

/// The testbed's `debian.sources`: the suite and its -updates from the
/// mirror, -security from the security mirror (none for sid/unstable).
pub fn sources_text(d: &Debootstrap) -> String {
    let types = if d.deb_src { "deb deb-src" } else { "deb" };
    let components = d.components.join(" ");
    let stanza = |uri: &str, suites: &str| {
        format!(
            "Types: {types}\nURIs: {uri}\nSuites: {suites}\nComponents: {components}\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    };
    let suite = &d.suite;
    if matches!(suite.as_str(), "sid" | "unstable" | "experimental") {
        return format!("# written by adt-xen-image\n{}", stanza(&d.mirror, suite));
    }
    format!(
        "# written by adt-xen-image\n{}\n{}",
        stanza(&d.mirror, &format!("{suite} {suite}-updates")),
        stanza(&d.security_mirror, &format!("{suite}-security"))
    )
}

/// `apt-get update` in a chroot of `dir`. The root's resolv.conf points
/// into /run; the host's is lent there for the update, then removed.
fn apt_update(dir: &Path, host: &dyn Host) -> Result<()> {
    let run_dir = dir.join("run");
    fs::create_dir_all(&run_dir).map_err(io("create directory", &run_dir))?;
    let lent = run_dir.join("resolv.conf");
    if let Ok(resolv) = fs::read("/etc/resolv.conf") {
        fs::write(&lent, resolv).map_err(io("write", &lent))?;
    }
    let proc_dir = dir.join("proc");
    fs::create_dir_all(&proc_dir).map_err(io("create directory", &proc_dir))?;
    let proc_dir = proc_dir.to_string_lossy().into_owned();
    let root = dir.to_string_lossy();
    run_ok(
        host,
        &["mount", "-t", "proc", "proc", &proc_dir],
        timeout::QUICK,
    )?;
    let updated = run_ok(
        host,
        &["chroot", &root, "apt-get", "-q", "update"],
        timeout::FILL,
    );
    let unmounted = run_ok(host, &["umount", &proc_dir], timeout::QUICK);
    let _ = fs::remove_file(&lent);
    updated?;
    unmounted.map(drop)
}

/// `prepare-root`: debootstrap into `dir` (when the source is
/// debootstrap; `dir` must then be empty or absent) and configure it.
pub fn prepare_root(spec: &Spec, dir: &Path, host: &dyn Host) -> Result<()> {
    let key = read_authorized_key(&spec.root.authorized_key)?;
    let config = RootConfig::new(spec, &key);
    if let Source::Debootstrap(d) = spec.root.source() {
        let empty = fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none());
        if !empty {
            return Err(Error::NotEmpty {
                path: dir.to_owned(),
            });
        }
        debootstrap(dir, d, host)?;
    } else if !dir.is_dir() {
        return Err(Error::Missing {
            what: "root directory to configure",
            path: dir.to_owned(),
        });
    }
    configure_root(dir, &config, host)
}

/// The testbeds of an image share the origin's machine id; without one
/// systemd would make a new one at every boot and fail to keep it on the
/// read-only root.
fn machine_id(dir: &Path) -> Result<()> {
    let path = dir.join("etc/machine-id");
    let current = fs::read_to_string(&path).unwrap_or_default();
    let valid = current.trim().len() == 32 && current.trim().bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        return Ok(());
    }
    let mut bytes = [0u8; 16];
    let random = Path::new("/dev/urandom");
    fs::File::open(random)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(io("read", random))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    install(&path, format!("{id}\n").as_bytes(), 0o444)
}

fn with_newline(text: &str) -> String {
    let mut t = text.trim_end().to_owned();
    t.push('\n');
    t
}

/// Write a file (replacing a symlink or file there) with `mode`, owned by
/// root when we are root.
fn install(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    }
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        fs::remove_file(path).map_err(io("remove", path))?;
    }
    fs::write(path, contents).map_err(io("write", path))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))?;
    if crate::host::effective_uid() == Some(0) {
        std::os::unix::fs::chown(path, Some(0), Some(0)).map_err(io("chown", path))?;
    }
    Ok(())
}

/// Make `link` a symlink to `target`, whatever file was there.
fn symlink(target: &str, link: &Path) -> Result<()> {
    if fs::read_link(link).is_ok_and(|t| t == Path::new(target)) {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent).map_err(io("create directory", parent))?;
    }
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).map_err(io("remove", link))?;
    }
    std::os::unix::fs::symlink(target, link).map_err(io("symlink", link))
}

#[cfg(test)]
#[path = "root_tests.rs"]
mod tests;
