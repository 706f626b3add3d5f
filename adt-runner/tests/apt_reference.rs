//! adt-runner's `apt-get source` command against autopkgtest 5.28's own:
//! the text of /usr/bin/autopkgtest (installed with the `autopkgtest`
//! package) is evaluated by Python for the same source name, architecture
//! and options, and the shell command must be the same, byte for byte.

use std::path::Path;
use std::process::Command;

use adt_runner::aptconf::{apt_source_command, AptSetup};

const AUTOPKGTEST: &str = "/usr/bin/autopkgtest";

/// Evaluates the string definitions of autopkgtest's `apt-source` branch
/// and prints the command for SRC ARCH VARIANT (all, first, pinned:RELEASE).
const SCRIPT: &str = r#"
import sys
src, arch, variant = sys.argv[1:4]
text = open('/usr/bin/autopkgtest').read()
block = text[text.index("        create_command_part1 = '''"):text.index("    elif kind == 'git-source':")]
defs = block[:block.index("        is_pinned = False")]
tail = block[block.index("        create_command += '''"):]
ns = {'arg': src, 'testbed': type('T', (), {'dpkg_arch': arch})}
exec("if 1:\n" + defs, ns)
if variant.startswith('pinned:'):
    ns['create_command'] = 'OUT=$(apt-get source -d -q --only-source %(src)s/%(release)s 2>&1) || RC=$?;' % {'src': src, 'release': variant[7:]}
else:
    part2 = ns['create_command_part2_check_%s' % ('all_pkgs' if variant == 'all' else 'first_pkg')]
    ns['create_command'] = ns['create_command_part1'] + part2 + ns['create_command_part3']
exec("if 1:\n" + tail, ns)
sys.stdout.write(ns['create_command'])
"#;

fn reference(src: &str, arch: &str, variant: &str) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", SCRIPT, src, arch, variant])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the reference script failed (has autopkgtest's text moved?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn apt_source_command_is_autopkgtests() {
    if !Path::new(AUTOPKGTEST).exists() || !Path::new("/usr/bin/python3").exists() {
        adt_systest::skip("autopkgtest or python3 is not installed");
        return;
    }
    let fallback = AptSetup {
        fallback: true,
        ..AptSetup::default()
    };
    let strict = AptSetup {
        fallback: false,
        pockets: vec!["proposed=src:other".into()],
        ..AptSetup::default()
    };
    let strict_src = AptSetup {
        fallback: false,
        pockets: vec!["proposed=foo,src:mawk".into()],
        ..AptSetup::default()
    };
    let pinned = AptSetup {
        fallback: true,
        pins: vec!["unstable=bar".into(), "experimental=src:mawk,baz".into()],
        ..AptSetup::default()
    };
    let cases: [(&AptSetup, &str, &str, &str); 5] = [
        (&fallback, "mawk", "amd64", "all"),
        (&fallback, "libg++2.8", "i386", "all"),
        (&strict, "mawk", "arm64", "first"),
        (&strict_src, "mawk", "amd64", "all"),
        (&pinned, "mawk", "amd64", "pinned:experimental"),
    ];
    for (apt, src, arch, variant) in cases {
        let ours = apt_source_command(src, arch, apt);
        let theirs = reference(src, arch, variant);
        assert_eq!(ours, theirs, "{src} {arch} {variant}: the commands differ");
    }
}
