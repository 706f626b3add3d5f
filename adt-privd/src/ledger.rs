//! The resource ledger: one JSON file per testbed in the ledger directory
//! (default /run/adt-privd), written and synced *before* the command that
//! creates a resource runs and removed only after the teardown succeeded.
//! After a crash, the next start reads it (together with what the tools
//! report) to tear everything down.
//!
//! Not for: deciding ownership at run time; the engine's memory does that.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is known about one testbed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `adt-<image>-<slot>`: the snapshot and the domain name.
    pub name: String,
    pub image: String,
    pub slot: usize,
    /// The uid of the caller that created it.
    pub uid: u32,
    /// The caller's unique bus name; its disconnection tears this down.
    pub owner: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Whether a domain may exist (set before `xl restore` runs).
    pub domain: bool,
}

pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// Open (creating, mode 0700) the ledger directory.
    pub fn open(dir: &Path) -> std::io::Result<Ledger> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(Ledger {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// Write `record` durably: temp file, fsync, rename, fsync directory.
    pub fn write(&self, record: &Record) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{}.tmp", record.name));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(record)?)?;
        f.sync_all()?;
        fs::rename(&tmp, self.path(&record.name))?;
        fs::File::open(&self.dir)?.sync_all()
    }

    /// Forget a testbed; forgetting an unknown one is success.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => fs::File::open(&self.dir)?.sync_all(),
        }
    }

    /// The names of every testbed the ledger holds, including those whose
    /// file is damaged (their name is taken from the file name).
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let file = entry?.file_name();
            let file = file.to_string_lossy();
            if let Some(name) = file.strip_suffix(".json") {
                if !name.starts_with('.') {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn read(&self, name: &str) -> Option<Record> {
        let bytes = fs::read(self.path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            image: "img".into(),
            slot: 0,
            uid: 1000,
            owner: ":1.42".into(),
            created: 1,
            domain: false,
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger")).unwrap();
        ledger.write(&record("adt-img-0")).unwrap();
        ledger.write(&record("adt-img-1")).unwrap();
        let again = Ledger::open(&dir.path().join("ledger")).unwrap();
        assert_eq!(again.names().unwrap(), vec!["adt-img-0", "adt-img-1"]);
        assert_eq!(again.read("adt-img-1"), Some(record("adt-img-1")));
    }

    #[test]
    fn remove_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        ledger.write(&record("adt-img-0")).unwrap();
        ledger.remove("adt-img-0").unwrap();
        ledger.remove("adt-img-0").unwrap();
        assert!(ledger.names().unwrap().is_empty());
    }

    #[test]
    fn a_damaged_record_is_still_listed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        fs::write(dir.path().join("adt-img-3.json"), b"{garbage").unwrap();
        assert_eq!(ledger.names().unwrap(), vec!["adt-img-3"]);
        assert_eq!(ledger.read("adt-img-3"), None);
    }
}
