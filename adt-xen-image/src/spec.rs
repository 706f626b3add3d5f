//! The image spec (`/etc/autopkgtest-xen/image.toml`): what image to
//! build, on which volumes, from which root source, how its domains boot
//! and where they are on the network. Parsed strictly (unknown keys are
//! errors) and validated once; every error names the file and the key.
//!
//! Not for: names derived from the spec (`layout`) or doing anything.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use adt_privd::names::{is_valid_name, resource_name};

use crate::error::{Error, Result};
use crate::host::KNOWN_TOOLS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub image: String,
    pub volume_group: String,
    #[serde(default)]
    pub physical_volume: Option<PathBuf>,
    pub slots: usize,
    #[serde(default)]
    pub origin_size: Option<String>,
    pub cow_size: String,
    #[serde(default = "default_chunk")]
    pub chunk_sectors: u32,
    pub state_dir: PathBuf,
    pub root: RootSpec,
    pub domain: Domain,
    pub network: Network,
    pub ssh: Ssh,
    #[serde(default)]
    pub tools: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSpec {
    #[serde(default)]
    pub from_image: Option<PathBuf>,
    #[serde(default)]
    pub debootstrap: Option<Debootstrap>,
    pub authorized_key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debootstrap {
    pub suite: String,
    #[serde(default = "default_mirror")]
    pub mirror: String,
    #[serde(default = "default_security_mirror")]
    pub security_mirror: String,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub deb_src: bool,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    pub kernel: PathBuf,
    pub ramdisk: PathBuf,
    #[serde(default = "default_memory")]
    pub memory: u32,
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default = "default_extra")]
    pub extra: String,
    /// A directory holding lean `block` and `vif-bridge` hotplug scripts
    /// (the package ships them in /usr/libexec/autopkgtest-xen/hotplug)
    /// for the domains' disk and vif; unset: Xen's own scripts.
    #[serde(default)]
    pub hotplug_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub first_address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
    pub mac_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    pub key: PathBuf,
    #[serde(default = "default_ssh_timeout")]
    pub timeout: u64,
}

/// Where the origin's contents come from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// An ext4 image (file or block device), copied with `e2image -ra`.
    Image(&'a Path),
    Debootstrap(&'a Debootstrap),
}

fn default_chunk() -> u32 {
    8
}
fn default_mirror() -> String {
    "http://deb.debian.org/debian".into()
}
fn default_security_mirror() -> String {
    "http://deb.debian.org/debian-security".into()
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}
fn default_memory() -> u32 {
    256
}
fn default_vcpus() -> u32 {
    1
}
fn default_bridge() -> String {
    "xenbr0".into()
}
fn default_extra() -> String {
    "console=hvc0".into()
}
fn default_ssh_timeout() -> u64 {
    240
}

impl RootSpec {
    /// The one source validation left (`debootstrap` if given, else
    /// `from_image`).
    pub fn source(&self) -> Source<'_> {
        match (&self.debootstrap, &self.from_image) {
            (Some(d), _) => Source::Debootstrap(d),
            (None, Some(p)) => Source::Image(p),
            (None, None) => Source::Image(Path::new("")),
        }
    }
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Spec::parse(&text, path)
    }

    /// Parse and validate; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Spec> {
        let spec: Spec = toml::from_str(text).map_err(|e| {
            let (key, line) = match e.span() {
                Some(span) => key_at(text, span),
                None => (String::from("(file)"), 0),
            };
            let message = e.message().trim().to_owned();
            Error::Spec {
                path: path.to_owned(),
                key,
                message: if line > 0 {
                    format!("{message} (line {line})")
                } else {
                    message
                },
            }
        })?;
        spec.validate().map_err(|(key, message)| Error::Spec {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        })?;
        Ok(spec)
    }

    /// The address of slot `slot` (validated to stay in the last octet).
    pub fn slot_address(&self, slot: usize) -> Ipv4Addr {
        let first = u32::from(self.network.first_address);
        Ipv4Addr::from(first.saturating_add(slot as u32))
    }

    fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        self.validate_names()?;
        self.validate_root()?;
        self.validate_volumes()?;
        self.validate_domain()?;
        self.validate_network()?;
        self.validate_paths()
    }

    fn validate_names(&self) -> std::result::Result<(), (&'static str, String)> {
        if !(1..=99).contains(&self.slots) {
            return Err(("slots", format!("{} is not in 1..=99", self.slots)));
        }
        let longest = resource_name(&self.image, self.slots - 1);
        if !is_valid_name(&self.image) || !is_valid_name(&longest) {
            return Err((
                "image",
                format!(
                    "{:?} must match ^[a-z0-9][a-z0-9.+-]*$ and leave room for \"adt-\" and the \
                     slot number ({longest:?} must be at most 63 characters)",
                    self.image
                ),
            ));
        }
        if !is_lvm_name(&self.volume_group) {
            return Err((
                "volume_group",
                format!(
                    "{:?} is not a volume group name ([A-Za-z0-9+_.-], not starting with -)",
                    self.volume_group
                ),
            ));
        }
        Ok(())
    }

    fn validate_volumes(&self) -> std::result::Result<(), (&'static str, String)> {
        if let Some(size) = &self.origin_size {
            check_size(size).map_err(|m| ("origin_size", m))?;
        } else if self.root.debootstrap.is_some() {
            return Err((
                "origin_size",
                "required with a debootstrap source (e.g. \"3G\")".into(),
            ));
        }
        check_size(&self.cow_size).map_err(|m| ("cow_size", m))?;
        if !self.chunk_sectors.is_power_of_two() {
            return Err((
                "chunk_sectors",
                format!("{} is not a power of two", self.chunk_sectors),
            ));
        }
        Ok(())
    }

    fn validate_root(&self) -> std::result::Result<(), (&'static str, String)> {
        match (&self.root.from_image, &self.root.debootstrap) {
            (Some(_), Some(_)) | (None, None) => {
                return Err((
                    "root",
                    "give exactly one source: from_image or debootstrap".into(),
                ))
            }
            (Some(p), None) => check_absolute(p).map_err(|m| ("root.from_image", m))?,
            (None, Some(d)) => validate_debootstrap(d)?,
        }
        Ok(())
    }

    fn validate_domain(&self) -> std::result::Result<(), (&'static str, String)> {
        let d = &self.domain;
        if d.memory < 64 {
            return Err((
                "domain.memory",
                format!("{} MiB is too little (at least 64)", d.memory),
            ));
        }
        if d.vcpus == 0 {
            return Err(("domain.vcpus", "must be at least 1".into()));
        }
        let bridge_ok = !d.bridge.is_empty()
            && d.bridge.len() <= 15
            && d.bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !bridge_ok {
            return Err((
                "domain.bridge",
                format!("{:?} is not an interface name", d.bridge),
            ));
        }
        if d.extra.contains(['"', '\\', '\'', '\n']) {
            return Err((
                "domain.extra",
                "must not contain quotes, backslashes or newlines".into(),
            ));
        }
        if let Some(dir) = &d.hotplug_dir {
            let fine = dir.is_absolute()
                && dir
                    .to_str()
                    .is_some_and(|p| !p.contains(['"', '\'', ',', '=', ' ', '\n']));
            if !fine {
                return Err((
                    "domain.hotplug_dir",
                    format!(
                        "{} must be an absolute path without quotes, commas, '=' or spaces",
                        dir.display()
                    ),
                ));
            }
        }
        let own = ["root=", "init=", "adt."];
        if let Some(word) = d
            .extra
            .split_whitespace()
            .find(|w| own.iter().any(|o| w.starts_with(o)))
        {
            return Err((
                "domain.extra",
                format!("{word:?}: root=, init= and adt.* are the tool's own arguments"),
            ));
        }
        Ok(())
    }

    fn validate_network(&self) -> std::result::Result<(), (&'static str, String)> {
        let n = &self.network;
        if !(8..=30).contains(&n.prefix_len) {
            return Err((
                "network.prefix_len",
                format!("{} is not in 8..=30", n.prefix_len),
            ));
        }
        let first = n.first_address.octets()[3] as usize;
        if first == 0 || first + self.slots - 1 > 254 {
            return Err((
                "network.first_address",
                format!(
                    "{} + {} slots leaves the last octet's 1..=254 (a slot's MAC is made from it)",
                    n.first_address, self.slots
                ),
            ));
        }
        let mask = u32::MAX << (32 - u32::from(n.prefix_len));
        let net = |a: Ipv4Addr| u32::from(a) & mask;
        let last = self.slot_address(self.slots - 1);
        if net(n.first_address) != net(n.gateway) || net(last) != net(n.gateway) {
            return Err((
                "network.first_address",
                format!(
                    "slots {}..{last} are not all in the gateway's /{} network",
                    n.first_address, n.prefix_len
                ),
            ));
        }
        if (0..self.slots).any(|i| self.slot_address(i) == n.gateway) {
            return Err((
                "network.gateway",
                format!("{} is one of the slots' addresses", n.gateway),
            ));
        }
        check_mac_prefix(&n.mac_prefix).map_err(|m| ("network.mac_prefix", m))
    }

    fn validate_paths(&self) -> std::result::Result<(), (&'static str, String)> {
        check_absolute(&self.state_dir).map_err(|m| ("state_dir", m))?;
        check_absolute(&self.root.authorized_key).map_err(|m| ("root.authorized_key", m))?;
        check_absolute(&self.domain.kernel).map_err(|m| ("domain.kernel", m))?;
        check_absolute(&self.domain.ramdisk).map_err(|m| ("domain.ramdisk", m))?;
        check_absolute(&self.ssh.key).map_err(|m| ("ssh.key", m))?;
        if let Some(pv) = &self.physical_volume {
            check_absolute(pv).map_err(|m| ("physical_volume", m))?;
        }
        if self.ssh.timeout == 0 {
            return Err(("ssh.timeout", "must be at least 1 second".into()));
        }
        for (tool, path) in &self.tools {
            if !KNOWN_TOOLS.contains(&tool.as_str()) {
                return Err((
                    "tools",
                    format!("unknown tool {tool:?}; known: {}", KNOWN_TOOLS.join(", ")),
                ));
            }
            check_absolute(path).map_err(|m| ("tools", format!("{tool}: {m}")))?;
        }
        Ok(())
    }
}

fn validate_debootstrap(d: &Debootstrap) -> std::result::Result<(), (&'static str, String)> {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b))
    };
    if !word(&d.suite) {
        return Err((
            "root.debootstrap.suite",
            format!("{:?} is not a suite name", d.suite),
        ));
    }
    for (key, url) in [
        ("root.debootstrap.mirror", &d.mirror),
        ("root.debootstrap.security_mirror", &d.security_mirror),
    ] {
        let scheme = ["http://", "https://", "file:/"]
            .iter()
            .any(|s| url.starts_with(s));
        if !scheme || url.contains(char::is_whitespace) {
            return Err((key, format!("{url:?} is not an http(s):// or file:/ URL")));
        }
    }
    if let Some(p) = d.include.iter().find(|p| !word(p)) {
        return Err((
            "root.debootstrap.include",
            format!("{p:?} is not a package name"),
        ));
    }
    if d.components.is_empty() || d.components.iter().any(|c| !word(c)) {
        return Err((
            "root.debootstrap.components",
            "give one or more component names, e.g. [\"main\"]".into(),
        ));
    }
    Ok(())
}

/// An LVM size: digits and one unit of K, M, G, T (either case).
fn check_size(size: &str) -> std::result::Result<(), String> {
    let (digits, unit) = size.split_at(size.len().saturating_sub(1));
    let ok = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && digits.bytes().any(|b| b != b'0')
        && matches!(unit, "K" | "M" | "G" | "T" | "k" | "m" | "g" | "t");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{size:?} is not a size like \"3G\" (digits, then K, M, G or T)"
        ))
    }
}

fn check_mac_prefix(prefix: &str) -> std::result::Result<(), String> {
    let octets: Vec<&str> = prefix.split(':').collect();
    let hex = |o: &&str| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit());
    if octets.len() != 5 || !octets.iter().all(hex) {
        return Err(format!(
            "{prefix:?} is not five hex octets like \"00:16:3e:99:00\""
        ));
    }
    match u8::from_str_radix(octets[0], 16) {
        Ok(first) if first & 1 == 0 => Ok(()),
        _ => Err(format!(
            "{prefix:?} is a multicast prefix (first octet odd)"
        )),
    }
}

fn check_absolute(path: &Path) -> std::result::Result<(), String> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(format!("{} must be an absolute path", path.display()))
    }
}

/// LVM's rule for VG and LV names.
pub fn is_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
}

/// The dotted key a parse error's span points at, and its line number: the
/// key before the `=` left of the span (or the word at the span when it
/// is a key itself), prefixed with the table header above it.
fn key_at(text: &str, span: Range<usize>) -> (String, usize) {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let line_no = text[..line_start].matches('\n').count() + 1;
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    if line.trim_start().starts_with('[') {
        let own = line.trim().trim_matches(|c| c == '[' || c == ']').trim();
        return (own.to_owned(), line_no);
    }
    let col = start - line_start;
    let before = &line[..col];
    // At a value: the key before its `=`; at a key (an unknown one, or
    // in an inline table after `{` or `,`): the word at the span.
    let leaf = match before.rfind('=') {
        None => leading_word(&line[col..]),
        Some(eq) => {
            let between = &before[eq + 1..];
            let in_array = between.matches('[').count() > between.matches(']').count();
            let at_key = between.trim_end().ends_with([',', '{']) && !in_array;
            if at_key {
                leading_word(&line[col..])
            } else {
                trailing_word(&before[..eq])
            }
        }
    };
    let mut parts: Vec<String> = table.into_iter().collect();
    parts.extend(inline_tables(before));
    parts.extend(Some(leaf).filter(|k| !k.is_empty()));
    let key = if parts.is_empty() {
        "(top level)".into()
    } else {
        parts.join(".")
    };
    (key, line_no)
}

/// The keys of the inline tables (`key = { ...`) still open in `before`.
fn inline_tables(before: &str) -> Vec<String> {
    let mut open = Vec::new();
    for (i, c) in before.char_indices() {
        match c {
            '{' => {
                let head = before[..i].trim_end();
                open.push(trailing_word(head.strip_suffix('=').unwrap_or(head)));
            }
            '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    open
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.\"".contains(c)
}

fn trailing_word(s: &str) -> String {
    let s = s.trim_end();
    let start = s
        .char_indices()
        .rev()
        .find(|(_, c)| !is_key_char(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    s[start..].trim_matches('"').to_owned()
}

fn leading_word(s: &str) -> String {
    let s = s.trim_start();
    let end = s.find(|c| !is_key_char(c)).unwrap_or(s.len());
    s[..end].trim_matches('"').to_owned()
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
