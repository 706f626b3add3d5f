//! The daemon's configuration: which images exist, where their volumes,
//! checkpoints and domain configs are, which tools to run and the limits.
//!
//! Every path adt-privd ever hands to a tool comes from here, never from a
//! caller. In the library so that adt-xen-image writes the file with the
//! same types the daemon reads (one definition of the format).
//! Not for: runtime state (see `engine`) or the ledger.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::names::is_valid_name;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the resource ledger (one file per testbed).
    #[serde(default = "default_ledger_dir")]
    pub ledger_dir: PathBuf,
    #[serde(default)]
    pub tools: Tools,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tools {
    #[serde(default = "default_dmsetup")]
    pub dmsetup: PathBuf,
    #[serde(default = "default_xl")]
    pub xl: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Testbeds (snapshots) one uid may hold at once; root is not limited.
    #[serde(default = "default_max_per_uid")]
    pub max_per_uid: usize,
    /// Seconds any dmsetup or xl call may take before it is killed.
    #[serde(default = "default_command_timeout")]
    pub command_timeout: u64,
    /// Seconds `xl restore` may take before it is killed.
    #[serde(default = "default_restore_timeout")]
    pub restore_timeout: u64,
    /// How often `dmsetup remove` is retried while the device is busy.
    #[serde(default = "default_remove_retries")]
    pub remove_retries: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The origin logical volume, never written after the checkpoints.
    pub origin: PathBuf,
    /// Snapshot chunk size in 512-byte sectors.
    #[serde(default = "default_chunk")]
    pub chunk_sectors: u32,
    pub slots: Vec<Slot>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// Copy-on-write volume of this slot's snapshot.
    pub cow: PathBuf,
    /// `xl save` checkpoint the slot resumes from.
    pub checkpoint: PathBuf,
    /// xl domain config whose name is `adt-<image>-<slot>` and whose disk is
    /// `/dev/mapper/adt-<image>-<slot>`.
    pub domain_config: PathBuf,
    /// Address the runner reaches the resumed domain at.
    pub address: String,
}

fn default_ledger_dir() -> PathBuf {
    PathBuf::from("/run/adt-privd")
}
fn default_dmsetup() -> PathBuf {
    PathBuf::from("/sbin/dmsetup")
}
fn default_xl() -> PathBuf {
    PathBuf::from("/usr/sbin/xl")
}
fn default_max_per_uid() -> usize {
    4
}
fn default_command_timeout() -> u64 {
    120
}
fn default_restore_timeout() -> u64 {
    300
}
fn default_remove_retries() -> u32 {
    10
}
fn default_chunk() -> u32 {
    8
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            dmsetup: default_dmsetup(),
            xl: default_xl(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_per_uid: default_max_per_uid(),
            command_timeout: default_command_timeout(),
            restore_timeout: default_restore_timeout(),
            remove_retries: default_remove_retries(),
        }
    }
}

impl Limits {
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout)
    }
    pub fn restore_timeout(&self) -> Duration {
        Duration::from_secs(self.restore_timeout)
    }
}

/// A configuration that could not be used, with the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and validate; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for tool in [&self.tools.dmsetup, &self.tools.xl] {
            if !tool.is_absolute() {
                return Err(format!(
                    "[tools]: {} must be an absolute path",
                    tool.display()
                ));
            }
        }
        if !self.ledger_dir.is_absolute() {
            return Err(format!(
                "ledger_dir {} must be an absolute path",
                self.ledger_dir.display()
            ));
        }
        if self.limits.command_timeout == 0 || self.limits.restore_timeout == 0 {
            return Err("[limits]: timeouts must be at least 1 second".into());
        }
        for (name, image) in &self.images {
            // The slot number is appended to the image name; keep the
            // resource name within the 63 characters callers may send back.
            let longest = crate::names::resource_name(name, image.slots.len().saturating_sub(1));
            if !is_valid_name(name) || !is_valid_name(&longest) {
                return Err(format!(
                    "[images.{name}]: image names must match ^[a-z0-9][a-z0-9.+-]{{0,62}}$ \
                     and leave room for the \"adt-\" prefix and slot number"
                ));
            }
            // LVM names its dm devices VG-LV with each dash of VG and LV
            // doubled: with a volume group "adt", LV "x-0" is dm device
            // "adt-x--0", which image "x-" would also name. A single dash
            // between parts never collides.
            if name.contains("--") || name.ends_with('-') {
                return Err(format!(
                    "[images.{name}]: an image name must not end with \"-\" nor hold \"--\": \
                     its testbeds' device names could then be an LVM volume's"
                ));
            }
            if image.slots.is_empty() {
                return Err(format!(
                    "[images.{name}]: no slots: add [[images.{name}.slots]]"
                ));
            }
            if image.chunk_sectors == 0 || !image.chunk_sectors.is_power_of_two() {
                return Err(format!(
                    "[images.{name}]: chunk_sectors must be a power of two"
                ));
            }
            check_absolute(&image.origin, &format!("[images.{name}] origin"))?;
            for (i, slot) in image.slots.iter().enumerate() {
                let at = format!("[[images.{name}.slots]] #{i}");
                check_absolute(&slot.cow, &format!("{at} cow"))?;
                check_absolute(&slot.checkpoint, &format!("{at} checkpoint"))?;
                check_absolute(&slot.domain_config, &format!("{at} domain_config"))?;
                if slot.cow == image.origin {
                    return Err(format!("{at}: cow is the origin volume"));
                }
                if slot.address.is_empty() {
                    return Err(format!("{at}: address is empty"));
                }
            }
        }
        self.check_volumes_are_not_shared()
    }

    /// No cow volume may be another slot's (of any image) nor any image's
    /// origin: a snapshot would write into it. Paths are compared once
    /// symlinks are resolved (/dev/VG/LV and /dev/mapper/VG-LV are the
    /// same device), where they exist.
    fn check_volumes_are_not_shared(&self) -> Result<(), String> {
        let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let mut seen: HashMap<PathBuf, String> = HashMap::new();
        for (name, image) in &self.images {
            seen.entry(real(&image.origin))
                .or_insert_with(|| format!("the origin of [images.{name}]"));
        }
        for (name, image) in &self.images {
            for (i, slot) in image.slots.iter().enumerate() {
                let at = format!("[[images.{name}.slots]] #{i}");
                let key = real(&slot.cow);
                if let Some(other) = seen.get(&key) {
                    return Err(format!(
                        "{at}: cow {} is also {other}; every slot needs a cow volume of its own",
                        slot.cow.display()
                    ));
                }
                seen.insert(key, format!("the cow of {at}"));
            }
        }
        Ok(())
    }
}

fn check_absolute(path: &Path, what: &str) -> Result<(), String> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {} must be an absolute path",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../docs/privd.toml.example");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn the_shipped_example_parses() {
        let c = parse(EXAMPLE).expect("docs/privd.toml.example must be valid");
        let image = &c.images["bookworm"];
        assert_eq!(image.slots.len(), 2);
        assert_eq!(image.chunk_sectors, 8);
    }

    #[test]
    fn defaults_apply() {
        let c = parse("").unwrap();
        assert_eq!(c.ledger_dir, Path::new("/run/adt-privd"));
        assert_eq!(c.tools.xl, Path::new("/usr/sbin/xl"));
        assert_eq!(c.limits.max_per_uid, 4);
    }

    #[test]
    fn errors_name_the_file_and_the_place() {
        let e = parse("[images.BAD]\norigin = \"/dev/x\"\n[[images.BAD.slots]]\ncow=\"/dev/c\"\ncheckpoint=\"/c\"\ndomain_config=\"/d\"\naddress=\"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("test.toml: [images.BAD]"), "{e}");
        let e = parse("[images.a]\norigin = \"/dev/x\"\nslots = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no slots"), "{e}");
        let e = parse("[tools]\nxl = \"xl\"\n").unwrap_err().to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = parse("bogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_serialized_config_parses_back_the_same() {
        let c = parse(EXAMPLE).unwrap();
        let text = toml::to_string(&c).expect("a Config serializes");
        let back = parse(&text).expect("what adt-xen-image writes, adt-privd reads");
        assert_eq!(back.images["bookworm"].slots[1].address, "10.99.0.11");
        assert_eq!(back.limits.remove_retries, c.limits.remove_retries);
        assert_eq!(back.tools.dmsetup, c.tools.dmsetup);
    }

    const SLOT: &str = "checkpoint=\"/c\"\ndomain_config=\"/d\"\naddress=\"a\"\n";

    /// The error for images a (origin /dev/x, cow /dev/c) and b (origin
    /// /dev/y, cow `cow_b`).
    fn two_images_error(cow_b: &str) -> String {
        parse(&format!(
            "[images.a]\norigin = \"/dev/x\"\n[[images.a.slots]]\ncow=\"/dev/c\"\n{SLOT}\
             [images.b]\norigin = \"/dev/y\"\n[[images.b.slots]]\ncow=\"{cow_b}\"\n{SLOT}"
        ))
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn volumes_shared_between_images_are_refused() {
        let e = two_images_error("/dev/x");
        assert!(
            e.contains("[[images.b.slots]] #0: cow /dev/x is also the origin of [images.a]"),
            "{e}"
        );
        let e = two_images_error("/dev/c");
        assert!(
            e.contains("is also the cow of [[images.a.slots]] #0"),
            "{e}"
        );
    }

    #[test]
    fn the_same_volume_through_a_symlink_is_the_same() {
        let d = tempfile::tempdir().unwrap();
        let cow = d.path().join("cow");
        std::fs::write(&cow, "").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&cow, &link).unwrap();
        let e = parse(&format!(
            "[images.a]\norigin = \"/dev/x\"\n[[images.a.slots]]\ncow=\"{}\"\n{SLOT}\
             [[images.a.slots]]\ncow=\"{}\"\n{SLOT}",
            cow.display(),
            link.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("is also the cow of [[images.a.slots]] #0"),
            "{e}"
        );
    }

    #[test]
    fn image_names_that_could_be_lvm_device_names_are_refused() {
        for bad in ["x-", "a--b"] {
            let e = parse(&format!(
                "[images.\"{bad}\"]\norigin = \"/dev/x\"\n[[images.\"{bad}\".slots]]\ncow=\"/dev/c\"\n{SLOT}"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains("must not end with"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_slot_on_the_origin_is_refused() {
        let e = parse("[images.a]\norigin = \"/dev/x\"\n[[images.a.slots]]\ncow=\"/dev/x\"\ncheckpoint=\"/c\"\ndomain_config=\"/d\"\naddress=\"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cow is the origin"), "{e}");
    }
}
