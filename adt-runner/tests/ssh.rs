//! System tests of the ssh transport against a real sshd (the testbed of
//! tests/testbed/): separate live streams, exit status, timeouts, copies.

mod bed;

use std::io::Write;
use std::time::{Duration, Instant};

use adt_runner::ssh::Ssh;
use bed::{unavailable, Bed};

macro_rules! need_testbed {
    () => {
        if let Some(why) = unavailable() {
            adt_systest::skip(&why);
            return;
        }
    };
}

fn connect(bed: &Bed) -> Ssh {
    Ssh::connect(&bed.target(), Duration::from_secs(30)).expect("login to the testbed")
}

#[test]
fn big_stdout_and_stderr_at_once_neither_deadlocks_nor_mixes() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    let cmd = "(i=0; while [ $i -lt 20 ]; do head -c 262144 /dev/zero | tr '\\0' o; i=$((i+1)); done) & \
               (i=0; while [ $i -lt 20 ]; do head -c 262144 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done); wait";
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = ssh.run(cmd, None, &mut out, &mut err, Some(120)).unwrap();
    assert_eq!(exit.code, 0);
    assert_eq!(out.len(), 20 * 262144);
    assert_eq!(err.len(), 20 * 262144);
    assert!(out.iter().all(|&b| b == b'o') && err.iter().all(|&b| b == b'e'));
}

/// A sink that records when each chunk arrived.
struct Clock(Vec<(Instant, Vec<u8>)>);

impl Write for Clock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push((Instant::now(), buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn output_arrives_live_not_at_the_end() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    let started = Instant::now();
    let mut out = Clock(Vec::new());
    let exit = ssh
        .run(
            "echo first; sleep 2; echo second",
            None,
            &mut out,
            &mut std::io::sink(),
            None,
        )
        .unwrap();
    assert_eq!(exit.code, 0);
    let first = out
        .0
        .iter()
        .find(|(_, b)| b.starts_with(b"first"))
        .expect("first line");
    assert!(
        first.0 - started < Duration::from_millis(1500),
        "first line came after {:?}",
        first.0 - started
    );
}

#[test]
fn exit_status_and_signals_are_reported() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    assert_eq!(ssh.output("exit 3").unwrap().exit.code, 3);
    assert_eq!(ssh.output("kill -TERM $$").unwrap().exit.code, 128 + 15);
    let o = ssh.output("echo out; echo err >&2").unwrap();
    assert_eq!(
        (o.stdout.as_slice(), o.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
}

#[test]
fn a_remote_timeout_kills_the_process_group() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    let started = Instant::now();
    let exit = ssh
        .run(
            "sleep 1000 & sleep 1001; echo never",
            None,
            &mut std::io::sink(),
            &mut std::io::sink(),
            Some(2),
        )
        .unwrap();
    assert!(exit.timed_out, "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        bed.processes_matching("^sleep 100"),
        0,
        "sleeps left running"
    );
}

#[test]
fn trees_and_files_copy_both_ways_intact() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("a/b")).unwrap();
    std::fs::write(src.path().join("a/b/file"), b"nested\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.path().join("big"), &big).unwrap();
    std::os::unix::fs::symlink("big", src.path().join("link")).unwrap();
    ssh.copy_down(src.path(), "/tmp/copied tree", Some(60))
        .unwrap();
    let o = ssh
        .output("cat '/tmp/copied tree/a/b/file'; readlink '/tmp/copied tree/link'")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "nested\nbig\n");
    let back = tempfile::tempdir().unwrap();
    ssh.copy_up("/tmp/copied tree", &back.path().join("t"), true, Some(60))
        .unwrap();
    assert_eq!(std::fs::read(back.path().join("t/big")).unwrap(), big);
    ssh.copy_up(
        "/tmp/copied tree/a/b/file",
        &back.path().join("f"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(std::fs::read(back.path().join("f")).unwrap(), b"nested\n");
    assert!(ssh
        .copy_up("/tmp/no such file", &back.path().join("g"), false, None)
        .is_err());
}

#[test]
fn a_wrong_key_is_a_login_error() {
    need_testbed!();
    let bed = Bed::start();
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("k");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let mut t = bed.target();
    t.identity = Some(key);
    let e = Ssh::connect(&t, Duration::from_secs(5))
        .err()
        .expect("login must fail");
    assert!(e.to_string().contains("ssh login as root@"), "{e}");
}

#[test]
fn a_copy_that_hangs_is_given_up_at_its_timeout() {
    need_testbed!();
    let bed = Bed::start();
    let ssh = connect(&bed);
    // A FIFO nobody writes to (copy up) or reads from (copy down) blocks
    // its copy for ever.
    let o = ssh
        .output("rm -f /tmp/stuck-fifo && mkfifo /tmp/stuck-fifo")
        .unwrap();
    assert_eq!(o.exit.code, 0, "{}", String::from_utf8_lossy(&o.stderr));
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("f"), b"data\n").unwrap();
    for (what, result) in [
        (
            "copy up",
            Box::new(|| ssh.copy_up("/tmp/stuck-fifo", &local.path().join("up"), false, Some(2)))
                as Box<dyn Fn() -> Result<(), adt_runner::ssh::SshError>>,
        ),
        (
            "copy down",
            Box::new(|| ssh.copy_down(&local.path().join("f"), "/tmp/stuck-fifo", Some(2))),
        ),
    ] {
        let started = Instant::now();
        let e = result().expect_err(what);
        assert!(e.to_string().contains("timed out after 2 s"), "{what}: {e}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} took {:?}",
            started.elapsed()
        );
    }
    // The session is still usable afterwards.
    assert_eq!(ssh.output("true").unwrap().exit.code, 0);
}
