//! The output directory and what the user sees: `log` (everything shown on
//! the terminal), `summary` (one line per test in autopkgtest's format),
//! the per-test stdout/stderr files, `testinfo.json`, `exitcode`,
//! `duration`; and the terminal itself, written live.
//!
//! Not for: deciding verdicts (`verdict`) or what goes into the files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

const PROG: &str = "adt-runner";

/// Where a run's output goes, as autopkgtest's logging options say.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// `--output-dir` (created; must be empty); none: a temporary one.
    pub dir: Option<PathBuf>,
    /// `--log-file`: the log there instead of in the output directory.
    pub log_file: Option<PathBuf>,
    /// `--summary-file`: the summary there instead of in the output
    /// directory.
    pub summary_file: Option<PathBuf>,
    /// `--quiet`: no informational lines, no closing summary on stderr
    /// (warnings, errors and test results still).
    pub quiet: bool,
}

/// An output directory (given, or temporary and removed at the end).
pub struct Output {
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    log: File,
    summary: File,
    summary_path: PathBuf,
    quiet: bool,
}

fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

impl Output {
    /// Opens `dir` (created; must be empty), or a temporary directory.
    pub fn create(dir: Option<&Path>) -> Result<Output, String> {
        Output::open(&Destinations {
            dir: dir.map(Path::to_path_buf),
            ..Destinations::default()
        })
    }

    /// Opens the output directory and the log and summary where `to` says
    /// (each emptied first, as autopkgtest does).
    pub fn open(to: &Destinations) -> Result<Output, String> {
        let (dir, temp) = match to.dir.as_deref() {
            Some(d) => {
                fs::create_dir_all(d)
                    .map_err(|e| format!("cannot create --output-dir {}: {e}", d.display()))?;
                let mut entries = fs::read_dir(d)
                    .map_err(|e| format!("cannot read --output-dir {}: {e}", d.display()))?;
                if entries.next().is_some() {
                    return Err(format!("--output-dir \"{}\" is not empty", d.display()));
                }
                (d.to_path_buf(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("adt-runner.output.")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary output directory: {e}"))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let open = |given: &Option<PathBuf>, name: &str| {
            let path = given.clone().unwrap_or_else(|| dir.join(name));
            File::create(&path)
                .map(|f| (f, path.clone()))
                .map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        let (log, _) = open(&to.log_file, "log")?;
        let (summary, summary_path) = open(&to.summary_file, "summary")?;
        Ok(Output {
            dir,
            _temp: temp,
            log,
            summary,
            summary_path,
            quiet: to.quiet,
        })
    }

    /// Path of `name` in the output directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn to_stderr(&self, line: &str) {
        let _ = io::stderr().write_all(line.as_bytes());
        let _ = (&self.log).write_all(line.as_bytes());
    }

    /// An informational line (`adt-runner [HH:MM:SS]: msg`).
    pub fn info(&self, msg: &str) {
        if self.quiet {
            return;
        }
        self.to_stderr(&format!("{PROG} [{}]: {msg}\n", clock()));
    }

    /// A warning line.
    pub fn warning(&self, msg: &str) {
        self.to_stderr(&format!("{PROG}: WARNING: {msg}\n"));
    }

    /// An error line.
    pub fn error(&self, msg: &str) {
        self.to_stderr(&format!("{PROG} [{}]: ERROR: {msg}\n", clock()));
    }

    /// A line for stdout, the log and the summary.
    pub fn preport(&self, line: &str) {
        let line = format!("{line}\n");
        let _ = io::stdout().write_all(line.as_bytes());
        let _ = io::stdout().flush();
        let _ = (&self.log).write_all(line.as_bytes());
        let _ = (&self.summary).write_all(line.as_bytes());
    }

    /// Raw bytes for the log only.
    pub fn log_bytes(&self, bytes: &[u8]) {
        let _ = (&self.log).write_all(bytes);
    }

    /// A line for the summary only.
    pub fn psummary(&self, line: &str) {
        let _ = writeln!(&self.summary, "{line}");
    }

    /// A test result, `%-20s %s` as autopkgtest writes it.
    pub fn report(&self, test: &str, result: &str) {
        self.preport(&format!("{test:<20} {result}"));
    }

    /// Replays the summary on stderr (autopkgtest's closing block).
    pub fn show_summary(&self) {
        if self.quiet {
            return;
        }
        self.info("@@@@@@@@@@@@@@@@@@@@ summary");
        if let Ok(text) = fs::read(&self.summary_path) {
            let _ = io::stderr().write_all(&text);
            let _ = (&self.log).write_all(&text);
        }
    }

    /// A writer that shows a test's stdout (or stderr) live and logs it,
    /// keeping a copy in `file`.
    pub fn stream(&self, to_stderr: bool, file: Option<File>) -> Stream<'_> {
        Stream {
            to_stderr,
            log: &self.log,
            file,
            written: 0,
            first_line: Vec::new(),
        }
    }

    /// A writer to the terminal's stdout and the log (for the output of
    /// install and build steps).
    pub fn stream_plain(&self) -> Stream<'_> {
        self.stream(false, None)
    }

    /// Writes a small file into the output directory.
    pub fn write(&self, name: &str, content: &str) {
        if let Err(e) = fs::write(self.path(name), content) {
            self.warning(&format!("cannot write {}: {e}", self.path(name).display()));
        }
    }

    /// Writes testinfo.json.
    pub fn testinfo(&self, info: &TestInfo) {
        match serde_json::to_string_pretty(info) {
            Ok(s) => self.write("testinfo.json", &s),
            Err(e) => self.warning(&format!("cannot encode testinfo.json: {e}")),
        }
    }
}

/// testinfo.json, the fields autopkgtest writes.
#[derive(Debug, Serialize, Default)]
pub struct TestInfo {
    pub virt_server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_environment: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nproc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_flags: Option<String>,
}

/// A live test stream: terminal, log, and the test's own file.
pub struct Stream<'a> {
    to_stderr: bool,
    log: &'a File,
    file: Option<File>,
    /// Bytes seen.
    pub written: u64,
    first_line: Vec<u8>,
}

impl Stream<'_> {
    /// The first line written, with trailing blanks removed, as
    /// autopkgtest quotes it in `FAIL stderr: ...`.
    pub fn first_line(&self) -> String {
        let s = String::from_utf8_lossy(&self.first_line);
        s.trim_end_matches(['\n', ' ', '\t', '\r']).to_string()
    }
}

impl Write for Stream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.to_stderr {
            io::stderr().write_all(buf)?;
        } else {
            io::stdout().write_all(buf)?;
        }
        self.log.write_all(buf)?;
        if let Some(f) = &mut self.file {
            f.write_all(buf)?;
        }
        // Python's universal newlines, with which autopkgtest reads the
        // first line: a line ends at \n or at \r (a progress bar's)
        if !self.first_line.ends_with(b"\n") && !self.first_line.ends_with(b"\r") {
            let end = buf
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map_or(buf.len(), |i| i + 1);
            self.first_line.extend_from_slice(&buf[..end]);
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.to_stderr {
            io::stderr().flush()
        } else {
            io::stdout().flush()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_empty_output_dir_is_refused_like_autopkgtest() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x"), "").unwrap();
        let e = Output::create(Some(d.path())).err().unwrap();
        assert_eq!(
            e,
            format!("--output-dir \"{}\" is not empty", d.path().display())
        );
    }

    #[test]
    fn reports_use_autopkgtest_column_format() {
        let d = tempfile::tempdir().unwrap();
        let o = Output::create(Some(&d.path().join("out"))).unwrap();
        o.report("smoke", "PASS");
        o.report(
            "a-very-long-test-name-indeed",
            "FAIL non-zero exit status 1",
        );
        let s = fs::read_to_string(o.path("summary")).unwrap();
        assert_eq!(
            s,
            "smoke                PASS\na-very-long-test-name-indeed FAIL non-zero exit status 1\n"
        );
        assert!(fs::read_to_string(o.path("log"))
            .unwrap()
            .contains("smoke                PASS\n"));
    }

    #[test]
    fn log_and_summary_files_replace_the_output_dirs_and_quiet_drops_info() {
        let d = tempfile::tempdir().unwrap();
        let to = Destinations {
            dir: Some(d.path().join("out")),
            log_file: Some(d.path().join("my.log")),
            summary_file: Some(d.path().join("my.summary")),
            quiet: true,
        };
        fs::write(d.path().join("my.summary"), "stale\n").unwrap();
        let o = Output::open(&to).unwrap();
        o.info("not for quiet runs");
        o.error("an error");
        o.report("smoke", "PASS");
        o.show_summary();
        let read = |n: &str| fs::read_to_string(d.path().join(n)).unwrap();
        assert_eq!(read("my.summary"), "smoke                PASS\n");
        let log = read("my.log");
        assert!(log.contains("ERROR: an error\n") && log.contains("smoke                PASS\n"));
        assert!(
            !log.contains("not for quiet runs") && !log.contains("@@@@"),
            "{log}"
        );
        // the output directory holds neither
        assert!(!d.path().join("out/log").exists() && !d.path().join("out/summary").exists());
        let e = Output::open(&Destinations {
            summary_file: Some(d.path().join("no/such/dir/s")),
            ..Destinations::default()
        })
        .err()
        .unwrap();
        assert!(
            e.starts_with("cannot create ") && e.contains("no/such/dir/s"),
            "{e}"
        );
    }

    #[test]
    fn streams_keep_the_first_line_and_size() {
        let d = tempfile::tempdir().unwrap();
        let o = Output::create(Some(d.path())).unwrap();
        let f = File::create(d.path().join("t-stderr")).unwrap();
        let mut s = o.stream(true, Some(f));
        s.write_all(b"first part").unwrap();
        s.write_all(b" continued \t\nsecond\n").unwrap();
        assert_eq!(s.first_line(), "first part continued");
        assert_eq!(s.written, 30);
        assert_eq!(fs::read(d.path().join("t-stderr")).unwrap().len(), 30);
    }

    #[test]
    fn a_carriage_return_ends_the_first_line_as_in_python() {
        let d = tempfile::tempdir().unwrap();
        let o = Output::create(Some(d.path())).unwrap();
        let mut s = o.stream(true, None);
        s.write_all(b"progress 10%\rprogress 100%\n").unwrap();
        assert_eq!(s.first_line(), "progress 10%");
    }
}
