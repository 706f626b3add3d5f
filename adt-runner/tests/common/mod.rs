//! Shared set-up of the service tests: real servers on loopback (Debian's
//! aiosmtpd), Debian packages the tests need, the real bookworm Sources
//! index, fake-free output directories of `adt-runner run`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's python3 (the Debian packages' modules are there, not in any
/// other python3 on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

/// A loopback TCP port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Installs Debian packages the test needs when `probe` says they are
/// missing (CI runs as root on a fresh machine). Returns why it could not.
pub fn ensure_packages(probe: impl Fn() -> bool, packages: &[&str]) -> Result<(), String> {
    if probe() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(format!(
            "needs Debian packages {} and is not root to install them",
            packages.join(" ")
        ));
    }
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(["-o", "DPkg::Lock::Timeout=900"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() || !probe() {
        return Err(format!(
            "apt-get install {} failed: {}",
            packages.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn has_aiosmtpd() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A real SMTP server (aiosmtpd) saving every message into a Maildir.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

/// An aiosmtpd handler that refuses, with 550, every recipient whose
/// address contains its second argument, and saves the rest.
const REJECTING_HANDLER: &str = r#"
from aiosmtpd.handlers import Mailbox

class Rejecting(Mailbox):
    def __init__(self, maildir, refused):
        super().__init__(maildir)
        self.refused = refused

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refused in address:
            return "550 5.1.1 <%s>: recipient refused" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(*args)
"#;

impl Smtp {
    pub fn start(port: u16, maildir: &Path) -> Smtp {
        Smtp::spawn(port, maildir, None)
    }

    /// A server that refuses (550) recipients whose address contains
    /// `refused`.
    pub fn start_refusing(port: u16, maildir: &Path, refused: &str) -> Smtp {
        Smtp::spawn(port, maildir, Some(refused))
    }

    fn spawn(port: u16, maildir: &Path, refused: Option<&str>) -> Smtp {
        ensure_packages(has_aiosmtpd, &["python3-aiosmtpd"]).unwrap();
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"));
        match refused {
            None => {
                cmd.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(maildir);
            }
            Some(refused) => {
                let module = maildir.with_extension("handler");
                std::fs::create_dir_all(&module).unwrap();
                std::fs::write(module.join("rejecting.py"), REJECTING_HANDLER).unwrap();
                cmd.env("PYTHONPATH", &module)
                    .args(["-c", "rejecting.Rejecting"])
                    .arg(maildir)
                    .arg(refused);
            }
        }
        let child = cmd.stdin(Stdio::null()).spawn().expect("start aiosmtpd");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp {
            child,
            port,
            maildir: maildir.to_path_buf(),
        }
    }

    /// Messages received so far, parsed by Python's email package into
    /// JSON: headers, the text body, attachments (name, gunzipped text).
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let out = Command::new(PYTHON)
            .arg("-c")
            .arg(PARSE_MAILDIR)
            .arg(&self.maildir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

const PARSE_MAILDIR: &str = r#"
import email, email.policy, gzip, json, mailbox, re, sys
out = []
# In the order of delivery: Python's Maildir names a message
# SECONDS.MMICROSECONDSPpid..., the Date header has whole seconds only.
def delivered(kv):
    t = re.match(r"(\d+)\.M(\d+)P", kv[0])
    return (int(t[1]), int(t[2])) if t else (0, 0)
for key, m in sorted(mailbox.Maildir(sys.argv[1], create=False).items(), key=delivered):
    m = email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
    body = m.get_body(preferencelist=("plain",))
    atts = []
    for a in m.iter_attachments():
        data = a.get_payload(decode=True)
        atts.append({"name": a.get_filename(), "type": a.get_content_type(),
                     "text": gzip.decompress(data).decode("utf-8", "replace")})
    out.append({"from": str(m["From"]), "to": str(m["To"]), "subject": str(m["Subject"]),
                "body": body.get_content() if body else "", "attachments": atts})
print(json.dumps(out))
"#;

/// Writes an output directory as `adt-runner run` leaves it.
pub fn output_dir(
    dir: &Path,
    source: &str,
    version: &str,
    exitcode: i32,
    summary: &str,
    log: &str,
) {
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    let w = |n: &str, c: &str| std::fs::write(dir.join(n), c).unwrap();
    w("log", log);
    w("summary", summary);
    w("exitcode", &format!("{exitcode}\n"));
    w("duration", "3\n");
    w("testpkg-version", &format!("{source} {version}\n"));
    w("testinfo.json", "{\"virt_server\": \"ssh\"}");
    w("testbed-packages", "bash\t5.2.15-2+b2\n");
}

/// The real bookworm main Sources index, downloaded once with apt (a
/// private apt configuration; the host's sources are not touched) into
/// `target/test-data/`. Returns its path.
pub fn bookworm_sources() -> PathBuf {
    // One download for the tests of this process, which run in parallel.
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data");
    let path = target.join("bookworm-main-Sources");
    if path.exists() {
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fetch-sources");
    let out = Command::new("sh")
        .arg(&script)
        .arg("bookworm")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}
