use super::*;
use crate::testing::spec_text;

const EXAMPLE: &str = include_str!("../../docs/image.toml.example");

fn base() -> String {
    spec_text(Path::new("/nonexistent"))
}

/// The error of `text`, which must not parse.
fn error(text: &str) -> String {
    Spec::parse(text, Path::new("/etc/autopkgtest-xen/image.toml"))
        .expect_err("the spec should be refused")
        .to_string()
}

fn assert_names(e: &str, key: &str) {
    let prefix = format!("/etc/autopkgtest-xen/image.toml: {key}: ");
    assert!(e.starts_with(&prefix), "{e:?} should start with {prefix:?}");
}

#[test]
fn the_shipped_example_parses() {
    let s = Spec::parse(EXAMPLE, Path::new("image.toml.example")).expect("the example is valid");
    assert_eq!(s.image, "bookworm");
    assert_eq!(s.slots, 2);
    assert!(matches!(s.root.source(), Source::Image(p) if p == Path::new("/dev/vdc")));
    assert_eq!(s.domain.memory, 256);
    assert_eq!(s.slot_address(1), Ipv4Addr::new(10, 99, 0, 11));
}

#[test]
fn the_examples_debootstrap_line_parses() {
    let text = EXAMPLE
        .replace("from_image = \"/dev/vdc\"", "")
        .replace("# debootstrap = {", "debootstrap = {");
    let s = Spec::parse(&text, Path::new("x")).expect("the debootstrap variant is valid");
    let Source::Debootstrap(d) = s.root.source() else {
        panic!("debootstrap expected");
    };
    assert_eq!(d.suite, "bookworm");
    assert_eq!(d.mirror, "http://deb.debian.org/debian");
    assert_eq!(d.security_mirror, "http://deb.debian.org/debian-security");
    assert!(d.deb_src);
    assert_eq!(d.components, ["main"]);
}

#[test]
fn defaults_apply() {
    let text = base()
        .replace("extra = \"console=hvc0 quiet\"\n", "")
        .replace("timeout = 1\n", "");
    let s = Spec::parse(&text, Path::new("x")).unwrap();
    assert_eq!(s.chunk_sectors, 8);
    assert_eq!(s.domain.vcpus, 1);
    assert_eq!(s.domain.extra, "console=hvc0");
    assert_eq!(s.ssh.timeout, 240);
    assert!(s.origin_size.is_none());
}

#[test]
fn type_errors_name_the_key() {
    assert_names(
        &error(&base().replace("slots = 2", "slots = \"two\"")),
        "slots",
    );
    let e = error(&base().replace("prefix_len = 24", "prefix_len = \"24\""));
    assert_names(&e, "network.prefix_len");
    assert!(e.contains("(line "), "{e}");
    let e = error(&base().replace("gateway = \"10.99.0.1\"", "gateway = \"10.99.0.300\""));
    assert_names(&e, "network.gateway");
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let e = error(&base().replace("[ssh]\n", "[ssh]\nport = 22\n"));
    assert_names(&e, "ssh.port");
    assert!(e.contains("unknown field `port`"), "{e}");
    let e = error(&base().replace("ramdisk = ", "# ramdisk = "));
    assert_names(&e, "domain");
    assert!(e.contains("missing field `ramdisk`"), "{e}");
}

#[test]
fn keys_inside_an_inline_table_are_named() {
    let with = |table: &str| {
        base().replace(
            "from_image = \"/nonexistent/domu.img\"",
            &format!("debootstrap = {table}"),
        )
    };
    let e = error(&with("{ suite = 12 }"));
    assert_names(&e, "root.debootstrap.suite");
    let e = error(&with("{ suite = \"bookworm\", mirrors = \"x\" }"));
    assert_names(&e, "root.debootstrap.mirrors");
    let e = error(&with("{ suite = \"bookworm\", include = [\"a\", 5] }"));
    assert_names(&e, "root.debootstrap.include");
}

#[test]
fn nonsense_values_are_refused_with_their_key() {
    let cases = [
        ("slots = 2", "slots = 0", "slots"),
        ("slots = 2", "slots = 100", "slots"),
        ("image = \"bookworm\"", "image = \"Bookworm\"", "image"),
        (
            "image = \"bookworm\"",
            &format!("image = \"{}\"", "a".repeat(58)),
            "image",
        ),
        (
            "volume_group = \"adt\"",
            "volume_group = \"-adt\"",
            "volume_group",
        ),
        ("cow_size = \"1G\"", "cow_size = \"1 G\"", "cow_size"),
        ("cow_size = \"1G\"", "cow_size = \"0G\"", "cow_size"),
        ("slots = 2", "slots = 2\nchunk_sectors = 6", "chunk_sectors"),
        ("state_dir = \"/var", "state_dir = \"var", "state_dir"),
        ("quiet\"", "quiet init=/bin/sh\"", "domain.extra"),
        ("quiet\"", "quiet \\\\\"", "domain.extra"),
        (
            "quiet\"",
            "quiet\"\nhotplug_dir = \"relative/dir\"",
            "domain.hotplug_dir",
        ),
        (
            "quiet\"",
            "quiet\"\nhotplug_dir = \"/a,script=/bin/sh\"",
            "domain.hotplug_dir",
        ),
        (
            "first_address = \"10.99.0.10\"",
            "first_address = \"10.99.0.254\"",
            "network.first_address",
        ),
        (
            "first_address = \"10.99.0.10\"",
            "first_address = \"10.98.0.10\"",
            "network.first_address",
        ),
        (
            "gateway = \"10.99.0.1\"",
            "gateway = \"10.99.0.11\"",
            "network.gateway",
        ),
        (
            "mac_prefix = \"00:16:3e:99:00\"",
            "mac_prefix = \"00:16:3e:99\"",
            "network.mac_prefix",
        ),
        (
            "mac_prefix = \"00:16:3e:99:00\"",
            "mac_prefix = \"01:16:3e:99:00\"",
            "network.mac_prefix",
        ),
        ("timeout = 1", "timeout = 0", "ssh.timeout"),
        ("timeout = 1", "timeout = 1\n[tools]\nxl = \"xl\"", "tools"),
        (
            "timeout = 1",
            "timeout = 1\n[tools]\nrm = \"/bin/rm\"",
            "tools",
        ),
        ("bridge", "bridge", "domain.bridge"),
    ];
    for (from, to, key) in cases {
        let text = if key == "domain.bridge" {
            base().replace("[domain]\n", "[domain]\nbridge = \"xen br0\"\n")
        } else {
            base().replacen(from, to, 1)
        };
        assert_ne!(text, base(), "case {to:?} changed nothing");
        assert_names(&error(&text), key);
    }
}

#[test]
fn exactly_one_root_source_is_required() {
    let both = base().replace(
        "[root]\n",
        "[root]\ndebootstrap = { suite = \"bookworm\" }\n",
    );
    assert_names(&error(&both), "root");
    let none = base().replace("from_image = \"/nonexistent/domu.img\"\n", "");
    assert_names(&error(&none), "root");
}

#[test]
fn debootstrap_needs_an_origin_size_and_sane_words() {
    let text = base().replace(
        "from_image = \"/nonexistent/domu.img\"",
        "debootstrap = { suite = \"bookworm\" }",
    );
    assert_names(&error(&text), "origin_size");
    let sized = text.replace("cow_size", "origin_size = \"3G\"\ncow_size");
    assert!(Spec::parse(&sized, Path::new("x")).is_ok());
    let bad = sized.replace(
        "suite = \"bookworm\"",
        "suite = \"bookworm\", include = [\"a,b\"]",
    );
    assert_names(&error(&bad), "root.debootstrap.include");
    let bad = sized.replace(
        "suite = \"bookworm\"",
        "suite = \"bookworm\", mirror = \"ftp://x\"",
    );
    assert_names(&error(&bad), "root.debootstrap.mirror");
}

#[test]
fn an_unreadable_spec_names_the_file() {
    let e = Spec::load(Path::new("/nonexistent/image.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot read /nonexistent/image.toml"), "{e}");
}
