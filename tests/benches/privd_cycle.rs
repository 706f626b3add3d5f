//! Benchmark (not a test): latency of one full testbed cycle through
//! adt-privd (CreateSnapshot, ResumeDomain, DestroyDomain, RemoveSnapshot,
//! polkit checked on each, as a user of group autopkgtest) over 200
//! cycles, side by side with running the same four stand-in tool commands
//! directly, and the daemon's resident memory idle and after the cycles.
//!
//! Run (as root): cargo build --release -p adt-privd -p adt-systest --bins &&
//!   cargo bench -p adt-systest --bench privd_cycle

use std::process::Command;
use std::time::{Duration, Instant};

use adt_systest::client::Client;
use adt_systest::privd::{PrivdEnv, IMAGE};
use adt_systest::users::MEMBER_A;

const CYCLES: usize = 200;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn direct_cycle(env: &PrivdEnv) {
    let bin = env.dir.path().join("bin");
    let cfg = env.dir.path().join("0.cfg");
    let ck = env.dir.path().join("0.checkpoint");
    // The origin's real size, read as adt-privd reads it (seek to the end).
    let sectors = {
        use std::io::{Seek, SeekFrom};
        let mut dev = std::fs::File::open(&env.origin.path).unwrap();
        dev.seek(SeekFrom::End(0)).unwrap() / 512
    };
    let table = format!(
        "0 {sectors} snapshot {} {} n 8",
        env.origin.path.display(),
        env.dir.path().join("cow0").display()
    );
    let runs: [(&str, Vec<String>); 4] = [
        (
            "dmsetup",
            vec![
                "create".into(),
                "adt-bookworm-0".into(),
                "--table".into(),
                table,
            ],
        ),
        (
            "xl",
            vec![
                "restore".into(),
                "-e".into(),
                cfg.display().to_string(),
                ck.display().to_string(),
            ],
        ),
        ("xl", vec!["destroy".into(), "adt-bookworm-0".into()]),
        (
            "dmsetup",
            vec!["remove".into(), "--retry".into(), "adt-bookworm-0".into()],
        ),
    ];
    for (tool, args) in runs {
        let status = Command::new(bin.join(tool)).args(&args).status().unwrap();
        assert!(status.success(), "{tool} {args:?}");
    }
}

fn summary(name: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let (median, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    println!(
        "{name:<28} median {:>8.2} ms   p99 {:>8.2} ms",
        ms(median),
        ms(p99)
    );
    (median, p99)
}

fn main() {
    let env = PrivdEnv::start();
    let pid = env.pid();
    let mut a = Client::connect(&env.bus, Some(MEMBER_A));
    let idle = rss_kib(pid);

    let mut direct = Vec::with_capacity(CYCLES);
    for _ in 0..CYCLES {
        let t = Instant::now();
        direct_cycle(&env);
        direct.push(t.elapsed());
    }

    let mut through = Vec::with_capacity(CYCLES);
    for _ in 0..CYCLES {
        let t = Instant::now();
        let snap = a.call("CreateSnapshot", IMAGE).ok();
        let (domain, _address) = a
            .call("ResumeDomain", &snap)
            .ok()
            .split_once(' ')
            .map(|(d, a)| (d.to_owned(), a.to_owned()))
            .unwrap();
        a.call("DestroyDomain", &domain).ok();
        a.call("RemoveSnapshot", &snap).ok();
        through.push(t.elapsed());
    }
    let after = rss_kib(pid);

    println!("full cycle, {CYCLES} cycles (stand-in dmsetup/xl; polkit checked on every call)");
    let (d_med, d_p99) = summary("direct tool commands (4)", direct);
    let (p_med, p_p99) = summary("through adt-privd (4 calls)", through);
    println!(
        "ratio adt-privd/direct       median {:>8.2}x   p99 {:>8.2}x",
        ms(p_med) / ms(d_med),
        ms(p_p99) / ms(d_p99)
    );
    println!("adt-privd resident memory    idle {idle} KiB   after {CYCLES} cycles {after} KiB");
}
