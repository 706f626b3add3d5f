//! The web report rendered from a real history and real stored results,
//! loaded in headless Chromium (Debian's): the pages show the expected
//! rows, every link resolves to a file, and screenshots (desktop and
//! phone width) are kept under target/tmp/web-report/ for a human.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use adt_runner::history::{parse_summary, History, NewRun};
use adt_runner::results::Store;
use adt_runner::web::Site;
use common::{ensure_packages, output_dir};

fn record(
    hist: &mut History,
    store: &Store,
    src: &str,
    ver: &str,
    code: i32,
    summary: &str,
    tmp: &Path,
) {
    let out = tmp.join(format!("out-{src}-{}", hist.runs(src, 1000).unwrap().len()));
    output_dir(&out, src, ver, code, summary, "the transcript\n");
    let stored = store.store(src, &out, "{}").unwrap();
    hist.record(&NewRun {
        source: src.into(),
        version: ver.into(),
        release: store.release.clone(),
        arch: store.arch.clone(),
        started: stored.stamp.clone(),
        duration: 75,
        exitcode: code,
        result_dir: stored.rel.clone(),
        request: "{}".into(),
        seen: None,
        tests: parse_summary(summary),
    })
    .unwrap();
}

/// Runs headless Chromium with `args` on `url` and returns its stdout. It
/// runs in a process group of its own, which is killed afterwards so no
/// renderer or zygote outlives the test.
fn chromium(profile: &Path, args: &[String], url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(90) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    assert!(
        status.is_some_and(|s| s.success()),
        "chromium on {url}: {status:?}"
    );
    reader.join().unwrap()
}

/// The `href`s of a page's DOM.
fn hrefs(dom: &str) -> Vec<String> {
    dom.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.replace("&amp;", "&"))
        .collect()
}

fn rows(dom: &str, table: &str) -> usize {
    let start = dom.find(&format!("id=\"{table}\"")).expect(table);
    let end = dom[start..].find("</table>").unwrap() + start;
    dom[start..end].matches("<tr>").count() - 1
}

fn assert_links_resolve(page: &Path, dom: &str) {
    let dir = page.parent().unwrap();
    let links = hrefs(dom);
    assert!(!links.is_empty());
    for l in links {
        assert!(
            dir.join(&l).exists(),
            "{}: link {l} leads nowhere",
            page.display()
        );
    }
}

#[test]
fn pages_load_in_chromium_with_their_rows_and_working_links() {
    if let Err(why) = ensure_packages(
        || Command::new("chromium").arg("--version").output().is_ok(),
        &["chromium"],
    ) {
        adt_systest::skip(&why);
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = Store {
        root: d.path().join("results"),
        release: "bookworm".into(),
        arch: "amd64".into(),
    };
    let mut hist = History::open(&d.path().join("results/history.sqlite")).unwrap();
    let pass = "smoke                PASS\nunit                 PASS\n";
    let fail = "smoke                PASS\nunit                 FAIL non-zero exit status 1\n";
    record(&mut hist, &store, "hello", "2.10-2", 0, pass, d.path());
    record(&mut hist, &store, "hello", "2.10-3", 4, fail, d.path());
    record(&mut hist, &store, "bash", "5.2.15-2", 0, pass, d.path());
    record(
        &mut hist,
        &store,
        "gzip",
        "1.12-1",
        16,
        "testbed failure: ssh lost\n",
        d.path(),
    );
    record(&mut hist, &store, "libxml2", "2.9.14", 4, fail, d.path());

    let site = Site {
        out: d.path().join("web"),
        results_url: None,
        results_dir: store.root.clone(),
    };
    assert_eq!(site.render_all(&hist).unwrap(), 6);

    let profile = tempfile::tempdir().unwrap();
    let dump = |p: &Path| {
        chromium(
            profile.path(),
            &["--dump-dom".into()],
            &format!("file://{}", p.display()),
        )
    };

    let index = site.out.join("index.html");
    let dom = dump(&index);
    assert_eq!(rows(&dom, "latest"), 4, "one row per source: {dom}");
    for (src, class) in [
        ("bash", "PASS"),
        ("gzip", "TMPFAIL"),
        ("hello", "REGRESSION"),
        ("libxml2", "ALWAYSFAIL"),
    ] {
        let row = dom
            .split("<tr>")
            .find(|r| r.contains(&format!("packages/{src}.html")))
            .unwrap_or_else(|| panic!("no row for {src}"));
        assert!(
            row.contains(&format!("badge {class}")),
            "{src} is {class}: {row}"
        );
    }
    assert_links_resolve(&index, &dom);

    let page = site.out.join("packages/hello.html");
    let dom = dump(&page);
    assert_eq!(rows(&dom, "history"), 2);
    assert_eq!(rows(&dom, "tests"), 2);
    assert!(dom.contains("2.10-3"));
    assert_links_resolve(&page, &dom);
    let logs = hrefs(&dom)
        .into_iter()
        .filter(|h| h.ends_with("log.gz"))
        .count();
    assert_eq!(logs, 2, "a log link per run");

    let regs = site.out.join("regressions.html");
    let dom = dump(&regs);
    assert_eq!(rows(&dom, "regressions"), 1, "only hello regresses: {dom}");
    assert!(dom.contains("hello") && dom.contains(">unit<"), "{dom}");
    assert_links_resolve(&regs, &dom);

    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(site.out.join("packages/hello.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    assert_eq!(json["latest_tests"][1]["class"], "REGRESSION");

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-report");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, size, p) in [
        ("index-desktop.png", "1200,800", &index),
        ("hello-phone.png", "390,844", &page),
    ] {
        let shot = shots.join(name);
        let _ = std::fs::remove_file(&shot);
        chromium(
            profile.path(),
            &[
                format!("--screenshot={}", shot.display()),
                format!("--window-size={size}"),
                "--hide-scrollbars".into(),
            ],
            &format!("file://{}", p.display()),
        );
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5000,
            "{} is a real screenshot",
            shot.display()
        );
        eprintln!("screenshot: {}", shot.display());
    }
}
