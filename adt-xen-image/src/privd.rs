//! Step 5, adt-privd's configuration: this image's entry (origin, chunk
//! size, and per slot its COW, checkpoint, domain config and address),
//! merged into the existing file with adt-privd's own types so the other
//! images, [tools] and [limits] stay, validated by adt-privd's own parser
//! and written atomically.
//!
//! Not for: restarting adt-privd (the admin's call: it tears testbeds down).

use std::path::{Path, PathBuf};

use adt_privd::config::{Config, Image, Slot};

use crate::build::Build;
use crate::error::{Error, Result};
use crate::files;
use crate::layout::Layout;

const HEADER: &str = "\
# adt-privd's configuration (see /usr/share/doc/autopkgtest-xen/examples/privd.toml.example).
# Written by adt-xen-image, which replaces the entry of each image it builds
# and keeps everything else (but not comments). Restart adt-privd after a change.
";

/// This image's entry, every path from the layout.
pub fn image_entry(layout: &Layout) -> Image {
    let slots = (0..layout.spec.slots)
        .map(|slot| Slot {
            cow: PathBuf::from(layout.cow_dev(slot)),
            checkpoint: layout.checkpoint(slot),
            domain_config: layout.domain_config(slot),
            address: layout.address(slot),
        })
        .collect();
    Image {
        origin: PathBuf::from(layout.origin_dev()),
        chunk_sectors: layout.spec.chunk_sectors,
        slots,
    }
}

/// The new file's text: `existing` (if any) with this image's entry
/// replaced, else defaults with the given dmsetup and xl. Checked by
/// parsing it back the way adt-privd will.
pub fn merged(
    existing: Option<&str>,
    path: &Path,
    layout: &Layout,
    tools: (PathBuf, PathBuf),
) -> Result<String> {
    let invalid = |e: adt_privd::config::ConfigError| Error::PrivdConfig {
        path: path.to_owned(),
        message: format!("{e}; fix or remove it, then run again"),
    };
    let mut config = match existing {
        Some(text) => Config::parse(text, path).map_err(invalid)?,
        None => {
            let mut c = Config::parse("", path).map_err(invalid)?;
            (c.tools.dmsetup, c.tools.xl) = tools;
            c
        }
    };
    config
        .images
        .insert(layout.spec.image.clone(), image_entry(layout));
    let body = toml::to_string(&config).map_err(|e| Error::PrivdConfig {
        path: path.to_owned(),
        message: format!("cannot write the configuration: {e}"),
    })?;
    let text = format!("{HEADER}\n{body}");
    Config::parse(&text, path).map_err(|e| Error::PrivdConfig {
        path: path.to_owned(),
        message: format!("the written configuration would not load: {e}"),
    })?;
    Ok(text)
}

pub fn write(b: &Build) -> Result<()> {
    let path = &b.options.privd_config;
    // Builds of other images merge into the same file: one at a time, so
    // neither loses the other's entry.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    files::create_dir(b.host, dir)?;
    let _lock = files::lock_dir(b.host, dir, true, "another adt-xen-image's merge")?;
    let existing = files::read_optional(path)?.map(|t| String::from_utf8_lossy(&t).into_owned());
    let tools = (
        b.host
            .which("dmsetup")
            .unwrap_or_else(|| "/sbin/dmsetup".into()),
        b.host.which("xl").unwrap_or_else(|| "/usr/sbin/xl".into()),
    );
    let text = merged(existing.as_deref(), path, &b.layout, tools)?;
    if existing.as_deref() == Some(text.as_str()) {
        b.step(&format!("{} is current", path.display()));
        return Ok(());
    }
    files::write_atomic(b.host, path, text.as_bytes(), 0o644)?;
    if b.host.dry_run() {
        print!("{text}");
    } else {
        b.step(&format!(
            "wrote {} (restart adt-privd to use it)",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;

    const OTHER: &str = include_str!("../../docs/privd.toml.example");

    fn tools() -> (PathBuf, PathBuf) {
        ("/usr/sbin/dmsetup".into(), "/usr/local/sbin/xl".into())
    }

    #[test]
    fn merging_keeps_another_image_tools_and_limits_and_round_trips() {
        let mut s = spec();
        s.image = "sid".into();
        s.slots = 3;
        let existing = OTHER.replace("max_per_uid = 4", "max_per_uid = 7");
        let path = Path::new("/etc/autopkgtest-xen/privd.toml");
        let text = merged(Some(&existing), path, &Layout { spec: &s }, tools()).unwrap();
        let c = Config::parse(&text, path).unwrap();
        assert_eq!(c.images["bookworm"].slots.len(), 2, "the other image stays");
        assert_eq!(
            c.images["bookworm"].origin,
            Path::new("/dev/adt/bookworm-origin")
        );
        assert_eq!(c.limits.max_per_uid, 7);
        assert_eq!(
            c.tools.xl,
            Path::new("/usr/sbin/xl"),
            "existing [tools] win"
        );
        let sid = &c.images["sid"];
        assert_eq!(sid.origin, Path::new("/dev/adt/sid-origin"));
        assert_eq!(sid.slots.len(), 3);
        assert_eq!(sid.slots[2].cow, Path::new("/dev/adt/sid-cow2"));
        assert_eq!(sid.slots[2].address, "10.99.0.12");
        assert_eq!(
            sid.slots[2].checkpoint,
            Path::new("/var/lib/autopkgtest-xen/bookworm/2.checkpoint")
        );
        // merging again changes nothing
        let again = merged(Some(&text), path, &Layout { spec: &s }, tools()).unwrap();
        assert_eq!(again, text);
    }

    #[test]
    fn the_images_own_entry_is_replaced_not_added_to() {
        let mut s = spec();
        s.slots = 1;
        let path = Path::new("p.toml");
        let text = merged(Some(OTHER), path, &Layout { spec: &s }, tools()).unwrap();
        let c = Config::parse(&text, path).unwrap();
        assert_eq!(c.images.len(), 1);
        assert_eq!(c.images["bookworm"].slots.len(), 1);
    }

    #[test]
    fn a_new_file_gets_the_tools_found_and_default_limits() {
        let s = spec();
        let path = Path::new("p.toml");
        let text = merged(None, path, &Layout { spec: &s }, tools()).unwrap();
        let c = Config::parse(&text, path).unwrap();
        assert_eq!(c.tools.xl, Path::new("/usr/local/sbin/xl"));
        assert_eq!(c.tools.dmsetup, Path::new("/usr/sbin/dmsetup"));
        assert_eq!(c.limits.command_timeout, 120);
        assert_eq!(c.images["bookworm"].chunk_sectors, 8);
    }

    #[test]
    fn an_invalid_existing_file_is_not_overwritten() {
        let s = spec();
        let e = merged(
            Some("bogus = 1\n"),
            Path::new("p.toml"),
            &Layout { spec: &s },
            tools(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("p.toml: ") && e.contains("fix or remove it"),
            "{e}"
        );
    }
}
