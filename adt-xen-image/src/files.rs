//! Files the build writes in the state directory and in adt-privd's
//! configuration directory: atomic writes (temp file, fsync, rename),
//! removals, stamps, and a stable content hash for stamps. Every change
//! goes through here so a dry run can print it instead.
//!
//! Not for: the testbed's root filesystem (`root` writes into a mounted
//! origin or a directory directly).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{io, Error, Result};
use crate::host::Host;

/// Write `contents` to `path` atomically (a `.new` sibling renamed into
/// place, fsynced before and after) with `mode`.
pub fn write_atomic(host: &dyn Host, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    if host.dry_run() {
        println!(
            "adt-xen-image: would write {} ({} bytes)",
            path.display(),
            contents.len()
        );
        return Ok(());
    }
    let tmp = path.with_file_name(format!(
        "{}.new",
        path.file_name()
            .map_or("file".into(), |n| n.to_string_lossy())
    ));
    let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(contents).map_err(io("write", &tmp))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("chmod", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Remove a file; one that does not exist is already what was asked for.
pub fn remove(host: &dyn Host, path: &Path) -> Result<()> {
    if !path.exists() && fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if host.dry_run() {
        println!("adt-xen-image: would remove {}", path.display());
        return Ok(());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

pub fn create_dir(host: &dyn Host, path: &Path) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if host.dry_run() {
        println!("adt-xen-image: would create directory {}", path.display());
        return Ok(());
    }
    fs::create_dir_all(path).map_err(io("create directory", path))
}

/// An exclusive lock on a directory, held until dropped; none in a dry run.
pub struct DirLock {
    _held: Option<Flock<fs::File>>,
}

/// Lock `dir` (flock on the directory itself: no lock file to leave
/// behind). With `wait`, wait for the holder; without, fail at once with
/// `Error::Busy` naming the directory and `what` (the likely holder).
pub fn lock_dir(host: &dyn Host, dir: &Path, wait: bool, what: &'static str) -> Result<DirLock> {
    if host.dry_run() {
        return Ok(DirLock { _held: None });
    }
    let file = fs::File::open(dir).map_err(io("open", dir))?;
    let arg = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(DirLock { _held: Some(lock) }),
        Err((_, Errno::EWOULDBLOCK)) => Err(Error::Busy {
            path: dir.to_owned(),
            what,
        }),
        Err((_, errno)) => Err(Error::Io {
            action: "lock",
            path: dir.to_owned(),
            source: errno.into(),
        }),
    }
}

pub fn rename(host: &dyn Host, from: &Path, to: &Path) -> Result<()> {
    if host.dry_run() {
        println!(
            "adt-xen-image: would rename {} to {}",
            from.display(),
            to.display()
        );
        return Ok(());
    }
    fs::rename(from, to).map_err(io("rename into place", to))
}

/// A file's contents, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// The stamp at `path` (trimmed), `None` when there is none.
pub fn read_stamp(path: &Path) -> Result<Option<String>> {
    Ok(read_optional(path)?.map(|b| String::from_utf8_lossy(&b).trim().to_owned()))
}

pub fn write_stamp(host: &dyn Host, path: &Path, stamp: &str) -> Result<()> {
    write_atomic(host, path, format!("{stamp}\n").as_bytes(), 0o644)
}

/// A non-empty regular file (what a finished checkpoint is).
pub fn non_empty(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// FNV-1a, 64 bits, over length-prefixed parts: stable across Rust
/// versions and machines (std's hasher is not), so a stamp written today
/// still matches after an upgrade.
pub fn fnv64(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for part in parts {
        eat(&(part.len() as u64).to_le_bytes());
        eat(part);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn an_atomic_write_replaces_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::default();
        let p = dir.path().join("a.cfg");
        write_atomic(&host, &p, b"one", 0o600).unwrap();
        write_atomic(&host, &p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(!dir.path().join("a.cfg.new").exists());
    }

    #[test]
    fn a_dry_run_changes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakeHost::dry();
        let p = dir.path().join("a");
        write_atomic(&host, &p, b"x", 0o644).unwrap();
        assert!(!p.exists());
        fs::write(&p, "keep").unwrap();
        remove(&host, &p).unwrap();
        assert!(p.exists());
    }

    #[test]
    fn the_hash_is_stable_and_separates_parts() {
        assert_eq!(fnv64(&[b"ab", b"c"]), fnv64(&[b"ab", b"c"]));
        assert_ne!(fnv64(&[b"ab", b"c"]), fnv64(&[b"a", b"bc"]));
        assert_eq!(fnv64(&[]), "cbf29ce484222325");
    }
}
