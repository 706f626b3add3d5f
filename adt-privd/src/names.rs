//! Names that are a public interface: bus name, object path, interface,
//! polkit action, error names, and the rule every caller-supplied name obeys.

/// Well-known bus name of adt-privd on the system bus.
pub const BUS_NAME: &str = "org.autopkgtest.Xen1";
/// Object path of the one object adt-privd serves.
pub const OBJECT_PATH: &str = "/org/autopkgtest/Xen1";
/// Interface name.
pub const INTERFACE: &str = "org.autopkgtest.Xen1";
/// The polkit action every mutating call is checked against.
pub const POLKIT_ACTION: &str = "org.autopkgtest.xen.testbed";
/// Prefix of every snapshot and domain adt-privd creates; start-up
/// reconciliation tears down everything that carries it.
pub const RESOURCE_PREFIX: &str = "adt-";

/// D-Bus error names adt-privd returns.
pub mod errors {
    /// polkit said no, or the caller does not own the resource.
    pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    /// Unknown or malformed image, snapshot or domain name.
    pub const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    /// Every slot of the image is in use.
    pub const NO_FREE_SLOT: &str = "org.autopkgtest.Xen1.Error.NoFreeSlot";
    /// The caller's uid already holds its configured maximum of testbeds.
    pub const LIMIT_EXCEEDED: &str = "org.autopkgtest.Xen1.Error.LimitExceeded";
    /// dmsetup or xl failed or timed out; the message carries its stderr.
    pub const COMMAND_FAILED: &str = "org.autopkgtest.Xen1.Error.CommandFailed";
    /// The call does not fit the testbed's state (e.g. resuming twice).
    pub const BAD_STATE: &str = "org.autopkgtest.Xen1.Error.BadState";
    /// Something on the daemon's side failed (ledger not writable, ...).
    pub const INTERNAL: &str = "org.autopkgtest.Xen1.Error.Internal";
}

/// Longest name accepted (the regex below allows 63 characters).
pub const MAX_NAME_LEN: usize = 63;

/// Whether `name` matches `^[a-z0-9][a-z0-9.+-]{0,62}$`, the only shape of
/// image, snapshot and domain names adt-privd accepts from a caller.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return false;
    };
    bytes.len() <= MAX_NAME_LEN
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-')
        })
}

/// The snapshot and domain name of slot `slot` of `image`.
pub fn resource_name(image: &str, slot: usize) -> String {
    format!("{RESOURCE_PREFIX}{image}-{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_accepted() {
        for n in [
            "a",
            "bookworm",
            "debian-12",
            "sid+1.0",
            "0abc",
            &"a".repeat(63),
        ] {
            assert!(is_valid_name(n), "{n:?} should be valid");
        }
    }

    #[test]
    fn malformed_names_are_rejected() {
        for n in [
            "",
            "-a",
            ".a",
            "+a",
            "A",
            "a/b",
            "..",
            "../etc",
            "a b",
            "a\0b",
            "a_b",
            "ä",
            &"a".repeat(64),
            &"a".repeat(4096),
        ] {
            assert!(!is_valid_name(n), "{n:?} should be invalid");
        }
    }

    #[test]
    fn resource_names_carry_the_prefix() {
        assert_eq!(resource_name("bookworm", 3), "adt-bookworm-3");
        assert!(resource_name("x", 0).starts_with(RESOURCE_PREFIX));
    }
}
