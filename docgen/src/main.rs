//! adt-docgen: writes the man pages and shell completions of adt-privd,
//! adt-xen-image and adt-runner from their clap definitions
//! (`adt_privd::cli::Args`, `adt_xen_image::cli::Cli`, `adt_runner::cli::Cli`), so the documentation installed by the Debian
//! package can never disagree with the options the binaries accept.
//!
//! Usage: `adt-docgen OUTDIR`. Writes `OUTDIR/man/*.{1,8}` and
//! `OUTDIR/completions/{bash,zsh,fish}/*`, prints each path written.
//!
//! Not for: installing anything (debian/rules and dh do that), nor for
//! users: it runs at package build time only.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

/// One program to document: its command line and the man section it
/// belongs to (8 for the daemon in /usr/sbin, 1 for the user command).
struct Program {
    command: clap::Command,
    section: &'static str,
    files: &'static [&'static str],
    see_also: &'static [(&'static str, &'static str)],
}

fn programs() -> Vec<Program> {
    vec![
        Program {
            command: adt_privd::cli::Args::command(),
            section: "8",
            files: &[
                "/etc/autopkgtest-xen/privd.toml",
                "/run/adt-privd/",
                "/usr/share/dbus-1/system.d/org.autopkgtest.Xen1.conf",
                "/usr/share/polkit-1/actions/org.autopkgtest.xen.policy",
                "/usr/share/doc/autopkgtest-xen/examples/",
            ],
            see_also: &[("adt-runner", "1"), ("dmsetup", "8"), ("xl", "1")],
        },
        Program {
            command: adt_xen_image::cli::Cli::command(),
            section: "8",
            files: &[
                "/etc/autopkgtest-xen/image.toml",
                "/etc/autopkgtest-xen/privd.toml",
                "/var/lib/autopkgtest-xen/",
                "/usr/share/doc/autopkgtest-xen/examples/image.toml.example",
            ],
            see_also: &[("adt-privd", "8"), ("xl", "1"), ("lvcreate", "8")],
        },
        Program {
            command: adt_runner::cli::Cli::command(),
            section: "1",
            files: &["/usr/share/doc/autopkgtest-xen/"],
            see_also: &[("adt-privd", "8"), ("autopkgtest", "1")],
        },
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: adt-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(out)) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("adt-docgen: writing into {out}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes every page and completion file under `out`; returns their paths.
fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for program in programs() {
        written.extend(man_pages(&program, &out.join("man"))?);
        written.extend(completions(&program, &out.join("completions"))?);
    }
    Ok(written)
}

/// The program's page, and one page per visible subcommand
/// (`adt-runner-run.1`), as git and cargo name theirs.
fn man_pages(program: &Program, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = program.command.clone().disable_help_subcommand(true);
    // Building gives subcommands their display names (`adt-runner-run`)
    // and bin names (`adt-runner run`) for their pages' NAME and SYNOPSIS.
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    let mut written = Vec::new();
    for page in pages {
        let is_main = page.get_name() == cmd.get_name();
        let man = Man::new(page)
            .section(program.section)
            .source(format!(
                "autopkgtest-xen {}",
                cmd.get_version().unwrap_or_default()
            ))
            .manual("autopkgtest-xen");
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        let tail = if is_main {
            files_and_see_also(program)
        } else {
            see_parent(cmd.get_name(), program.section)
        };
        text.write_all(tail.render().as_bytes())?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// FILES and SEE ALSO of a program's own page.
fn files_and_see_also(program: &Program) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for file in program.files {
        roff.control("TP", []).text([bold(*file)]);
    }
    let refs: Vec<String> = program
        .see_also
        .iter()
        .map(|(name, section)| format!("{name}({section})"))
        .collect();
    roff.control("SH", ["SEE ALSO"])
        .text([roman(refs.join(", "))]);
    roff
}

/// SEE ALSO of a subcommand's page: the program's page.
fn see_parent(parent: &str, section: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"])
        .text([bold(parent), roman(format!("({section})"))]);
    roff
}

/// Completion files named where Debian's shells look for them:
/// bash loads `completions/NAME` on demand, zsh wants `_NAME`, fish
/// `NAME.fish`.
fn completions(program: &Program, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let name = program.command.get_name().to_string();
    let mut written = Vec::new();
    for (shell, subdir, file) in [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ] {
        let dir = dir.join(subdir);
        std::fs::create_dir_all(&dir)?;
        let mut cmd = program.command.clone();
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut text);
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
