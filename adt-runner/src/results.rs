//! The results store: finished output directories of `adt-runner run`
//! kept in autopkgtest-cloud's layout,
//! `<release>/<arch>/<prefix>/<src>/<YYYYMMDD_HHMMSS>@/` holding
//! `result.tar` (exitcode, testpkg-version, duration, testbed-packages,
//! testinfo.json, summary), `log.gz` and `artifacts.tar.gz` (everything
//! else the run wrote), plus `request.json` (the request and the source's
//! control fields, for reporters).
//!
//! A result appears whole or not at all: it is written under a hidden
//! temporary name, every file and the directory fsynced, then renamed.
//! Names starting with `.` are never results.
//!
//! Not for: classifying results (`history`), telling anyone (`report`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

/// Files of an output directory that go into `result.tar`, in this order.
pub const RESULT_FILES: [&str; 6] = [
    "exitcode",
    "testpkg-version",
    "duration",
    "testbed-packages",
    "testinfo.json",
    "summary",
];

/// The directory level between arch and source, as the Debian archive
/// pools sources: `libfoo` → `libf`, `hello` → `h`.
pub fn prefix(source: &str) -> &str {
    let n = if source.starts_with("lib") && source.len() > 3 {
        4
    } else {
        1
    };
    let end = source
        .char_indices()
        .nth(n)
        .map_or(source.len(), |(i, _)| i);
    &source[..end]
}

/// `YYYYMMDD_HHMMSS` (UTC) of `t`.
pub fn stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}_{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Where a result was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The result directory.
    pub dir: PathBuf,
    /// The same, relative to the results root (`bookworm/amd64/h/hello/...@`).
    pub rel: String,
    /// Its stamp (`YYYYMMDD_HHMMSS`).
    pub stamp: String,
}

/// The results tree.
pub struct Store {
    pub root: PathBuf,
    pub release: String,
    pub arch: String,
}

fn io_err(what: &str, path: &Path) -> impl Fn(std::io::Error) -> String {
    let m = format!("{what} {}", path.display());
    move |e| format!("{m}: {e}")
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut f = File::create(path).map_err(io_err("cannot create", path))?;
    f.write_all(data).map_err(io_err("cannot write", path))?;
    f.sync_all().map_err(io_err("cannot sync", path))
}

/// Writes `data` to `path` so that a crash leaves either the old file or
/// the new one: a temporary name beside it, fsynced, renamed, directory
/// fsynced.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let parent = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    write_synced(&tmp, data)?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename to", path))?;
    sync_dir(parent)
}

fn sync_dir(path: &Path) -> Result<(), String> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("cannot sync directory", path))
}

impl Store {
    /// The directory holding all results of `source`.
    pub fn source_dir(&self, source: &str) -> PathBuf {
        self.root
            .join(&self.release)
            .join(&self.arch)
            .join(prefix(source))
            .join(source)
    }

    /// Stores the output directory `out` of a run of `source` as a new
    /// result, with `request_json` beside it. Leftovers of an interrupted
    /// store of the same source are removed first.
    pub fn store(&self, source: &str, out: &Path, request_json: &str) -> Result<Stored, String> {
        let prepared = self.prepare(source, out, request_json)?;
        commit(&prepared.tmp, &prepared.stored.dir)?;
        Ok(prepared.stored)
    }

    /// The first half of `store`: writes the result, fsynced, under a
    /// temporary name beside its final one and picks that final name, but
    /// does not make it a result yet; `commit` does. Between the two, a
    /// caller can note durably what it is about to store (the loop's
    /// pending marker), so that a crash at any point leaves either nothing
    /// stored or a stored result its note finishes.
    pub fn prepare(
        &self,
        source: &str,
        out: &Path,
        request_json: &str,
    ) -> Result<Prepared, String> {
        check_name(source)?;
        let parent = self.source_dir(source);
        fs::create_dir_all(&parent).map_err(io_err("cannot create", &parent))?;
        remove_leftovers(&parent);
        let tmp = parent.join(format!(".tmp.{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io_err("cannot create", &tmp))?;
        let written = write_result(out, &tmp, request_json);
        if let Err(e) = written.and_then(|()| sync_dir(&tmp)) {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // One result per second and source: a second run in the same
        // second takes the next free second.
        let mut t = SystemTime::now();
        loop {
            let stamp = stamp(t);
            let dir = parent.join(format!("{stamp}@"));
            if !dir.exists() {
                let rel = dir
                    .strip_prefix(&self.root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| dir.to_string_lossy().into_owned());
                return Ok(Prepared {
                    tmp,
                    stored: Stored { dir, rel, stamp },
                });
            }
            t += std::time::Duration::from_secs(1);
        }
    }
}

/// A result written by `Store::prepare`, not yet stored.
#[derive(Debug)]
pub struct Prepared {
    /// Where it is written (`.tmp.PID` beside its final directory).
    pub tmp: PathBuf,
    /// Where `commit` puts it.
    pub stored: Stored,
}

/// The second half of `Store::store`: renames a prepared result `tmp` to
/// its directory `dir`, durably. Fails, leaving `tmp` as it is, if `dir`
/// exists already.
pub fn commit(tmp: &Path, dir: &Path) -> Result<(), String> {
    if dir.exists() {
        return Err(format!(
            "cannot store a result as {}: it exists",
            dir.display()
        ));
    }
    fs::rename(tmp, dir).map_err(io_err("cannot rename a result to", dir))?;
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

/// A source name as Debian allows it: nothing that could leave the tree.
pub fn check_name(source: &str) -> Result<(), String> {
    let ok = source.len() >= 2
        && source
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && source.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{source:?} is not a source package name (lower case letters, digits, + - . and at least two characters)"
        ))
    }
}

fn remove_leftovers(parent: &Path) {
    if let Ok(entries) = fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp.") {
                tracing::warn!(path = %e.path().display(), "removing an interrupted result");
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn write_result(out: &Path, dest: &Path, request_json: &str) -> Result<(), String> {
    let mut tar = tar::Builder::new(Vec::new());
    for name in RESULT_FILES {
        let p = out.join(name);
        if p.is_file() {
            tar.append_path_with_name(&p, name)
                .map_err(io_err("cannot archive", &p))?;
        }
    }
    let tar = tar.into_inner().map_err(io_err("cannot archive", out))?;
    write_synced(&dest.join("result.tar"), &tar)?;

    let log = out.join("log");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    if log.is_file() {
        let mut f = File::open(&log).map_err(io_err("cannot read", &log))?;
        std::io::copy(&mut f, &mut gz).map_err(io_err("cannot compress", &log))?;
    }
    let gz = gz.finish().map_err(io_err("cannot compress", &log))?;
    write_synced(&dest.join("log.gz"), &gz)?;

    let mut arts = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    arts.follow_symlinks(false);
    let mut names: Vec<_> = fs::read_dir(out)
        .map_err(io_err("cannot read", out))?
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "log" && !RESULT_FILES.iter().any(|r| n == *r))
        .collect();
    names.sort();
    for n in names {
        let p = out.join(&n);
        let res = if p.is_dir() {
            arts.append_dir_all(&n, &p)
        } else {
            arts.append_path_with_name(&p, &n)
        };
        res.map_err(io_err("cannot archive", &p))?;
    }
    let arts = arts
        .into_inner()
        .and_then(|gz| gz.finish())
        .map_err(io_err("cannot archive", out))?;
    write_synced(&dest.join("artifacts.tar.gz"), &arts)?;
    write_synced(&dest.join("request.json"), request_json.as_bytes())
}

/// A stored result read back.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The files of `result.tar` by name.
    pub files: Vec<(String, Vec<u8>)>,
    /// `request.json`, `{}` when absent.
    pub request: serde_json::Value,
}

impl Loaded {
    /// A file of `result.tar` as text (empty when absent).
    pub fn text(&self, name: &str) -> String {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
            .unwrap_or_default()
    }

    /// The exit code, when recorded.
    pub fn exitcode(&self) -> Option<i32> {
        self.text("exitcode").trim().parse().ok()
    }

    /// (source, version) from `testpkg-version`.
    pub fn package(&self) -> Option<(String, String)> {
        let t = self.text("testpkg-version");
        let mut w = t.split_whitespace();
        Some((w.next()?.to_string(), w.next().unwrap_or("").to_string()))
    }
}

/// Reads the result directory `dir`.
pub fn load(dir: &Path) -> Result<Loaded, String> {
    let tar_path = dir.join("result.tar");
    let f = File::open(&tar_path).map_err(io_err("cannot open the result", &tar_path))?;
    let mut ar = tar::Archive::new(f);
    let mut files = Vec::new();
    for e in ar.entries().map_err(io_err("cannot read", &tar_path))? {
        let mut e = e.map_err(io_err("cannot read", &tar_path))?;
        let name = e
            .path()
            .map_err(io_err("cannot read", &tar_path))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data)
            .map_err(io_err("cannot read", &tar_path))?;
        files.push((name, data));
    }
    let req_path = dir.join("request.json");
    let request = match fs::read_to_string(&req_path) {
        Ok(s) => serde_json::from_str(&s).map_err(|e| format!("{}: {e}", req_path.display()))?,
        Err(_) => serde_json::json!({}),
    };
    Ok(Loaded { files, request })
}

/// The transcript (`log.gz`) of the result in `dir`.
pub fn read_log(dir: &Path) -> Result<Vec<u8>, String> {
    let p = dir.join("log.gz");
    let f = File::open(&p).map_err(io_err("cannot open", &p))?;
    let mut out = Vec::new();
    GzDecoder::new(f)
        .read_to_end(&mut out)
        .map_err(io_err("cannot decompress", &p))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_the_archive_pool() {
        assert_eq!(prefix("hello"), "h");
        assert_eq!(prefix("libfoo"), "libf");
        assert_eq!(prefix("lib"), "l");
        assert_eq!(prefix("0ad"), "0");
    }

    #[test]
    fn stamps_are_utc_calendar_times() {
        let t = |s| UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(stamp(t(0)), "19700101_000000");
        assert_eq!(stamp(t(951_782_400)), "20000229_000000");
        assert_eq!(stamp(t(1_795_000_000)), "20261118_110640");
        assert_eq!(stamp(t(4_102_444_799)), "20991231_235959");
    }

    #[test]
    fn bad_names_cannot_escape_the_tree() {
        for bad in ["../x", "a/b", "X", "", "-a", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("libc++-x.y").unwrap();
    }

    fn output(dir: &Path) {
        fs::create_dir_all(dir.join("artifacts")).unwrap();
        fs::write(dir.join("log"), "the transcript\n").unwrap();
        fs::write(dir.join("summary"), "t PASS\n").unwrap();
        fs::write(dir.join("exitcode"), "0\n").unwrap();
        fs::write(dir.join("testpkg-version"), "hello 2.10-3\n").unwrap();
        fs::write(dir.join("t-stdout"), "out\n").unwrap();
        fs::write(dir.join("artifacts/a.txt"), "artifact\n").unwrap();
    }

    #[test]
    fn a_stored_result_has_the_cloud_layout_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        output(&d.path().join("out"));
        let store = Store {
            root: d.path().join("results"),
            release: "bookworm".into(),
            arch: "amd64".into(),
        };
        fs::create_dir_all(store.source_dir("hello").join(".tmp.1")).unwrap();
        let a = store
            .store("hello", &d.path().join("out"), "{\"x\":1}")
            .unwrap();
        let b = store.store("hello", &d.path().join("out"), "{}").unwrap();
        assert!(a.rel.starts_with("bookworm/amd64/h/hello/"), "{}", a.rel);
        assert!(a.rel.ends_with('@'));
        assert_ne!(a.dir, b.dir, "two stores in one second get two dirs");
        let names: Vec<_> = fs::read_dir(store.source_dir("hello"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "leftovers are removed: {names:?}");
        let l = load(&a.dir).unwrap();
        let tar_names: Vec<_> = l.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(tar_names, ["exitcode", "testpkg-version", "summary"]);
        assert_eq!(l.exitcode(), Some(0));
        assert_eq!(
            l.package(),
            Some(("hello".to_string(), "2.10-3".to_string()))
        );
        assert_eq!(l.request["x"], 1);
        assert_eq!(read_log(&a.dir).unwrap(), b"the transcript\n");
        let gz = GzDecoder::new(File::open(a.dir.join("artifacts.tar.gz")).unwrap());
        let mut names: Vec<_> = tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["artifacts/", "artifacts/a.txt", "t-stdout"]);
    }
}
