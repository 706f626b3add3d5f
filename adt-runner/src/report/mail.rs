//! The built-in e-mail reporter: a message per stored result, addressed
//! by a template over the source's control data (default: its Maintainer
//! field), subject with source, version and verdict, body with the summary
//! and the transcript's tail, `log.gz` attached; sent over SMTP with lettre.
//!
//! Nothing is lost: every message is written to the spool (fsynced) before
//! the first attempt and removed only once the server accepted it; what is
//! left is retried by `flush` on later iterations, oldest first. A message
//! the server refuses for good (5xx) is set aside as `*.eml.rejected` for
//! the admin, so it cannot hold up the others; a report the template
//! cannot address (no Maintainer field, say) goes to the sender address.
//!
//! Not for: deciding what to report (`report`), the verdicts (`history`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::{Message, SmtpTransport, Transport};
use serde::{Deserialize, Serialize};

use crate::results::write_atomic;

/// Mail settings.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `HOST:PORT` of the SMTP server (a local MTA, no TLS, no login).
    pub smtp: String,
    pub from: String,
    /// Recipients: `{maintainer}`, `{uploaders}`, `{source}`, `{version}`
    /// are replaced; several addresses are separated by commas.
    pub to: String,
    /// Lines of the transcript quoted in the body.
    pub tail_lines: usize,
    /// The spool directory.
    pub spool: PathBuf,
}

/// What a message is about.
pub struct Report<'a> {
    pub source: &'a str,
    pub version: &'a str,
    /// PASS, REGRESSION, ... and the exit code.
    pub verdict: &'a str,
    pub summary: &'a str,
    pub log: &'a [u8],
    /// The source's control fields (Maintainer, Uploaders).
    pub control: &'a serde_json::Map<String, serde_json::Value>,
    /// Where the result is stored (named in the body).
    pub result_dir: &'a Path,
}

/// A spooled message's envelope.
#[derive(Serialize, Deserialize)]
struct Spooled {
    from: String,
    to: Vec<String>,
}

const PLACEHOLDERS: [&str; 4] = ["{maintainer}", "{uploaders}", "{source}", "{version}"];

/// Checks a recipient template (at configuration time).
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t.to_string();
    for p in PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains(['{', '}']) {
        return Err(format!(
            "mail recipient template {t:?}: unknown placeholder (known: {})",
            PLACEHOLDERS.join(", ")
        ));
    }
    Ok(())
}

/// The recipients of `r` under template `t`.
pub fn recipients(t: &str, r: &Report) -> Result<Mailboxes, String> {
    let field = |name: &str| {
        r.control
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    if t.contains("{maintainer}") && field("Maintainer").is_empty() {
        return Err(format!(
            "cannot address the report of {}: no Maintainer field in its control data",
            r.source
        ));
    }
    let text = t
        .replace("{maintainer}", &field("Maintainer"))
        .replace("{uploaders}", &field("Uploaders"))
        .replace("{source}", r.source)
        .replace("{version}", r.version);
    let text = text.trim().trim_matches(',').replace(",,", ",");
    text.parse::<Mailboxes>()
        .map_err(|e| format!("cannot address the report of {}: {text:?}: {e}", r.source))
}

fn tail(log: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(log);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sender address, checked (at configuration time too).
pub fn sender(from: &str) -> Result<Mailbox, String> {
    from.parse()
        .map_err(|e| format!("mail sender {from:?}: not an address: {e}"))
}

/// Composes the message for `r`. A report the template cannot address is
/// sent to the sender address instead, saying why, rather than lost.
pub fn compose(cfg: &MailConfig, r: &Report) -> Result<Message, String> {
    let from = sender(&cfg.from)?;
    let (to, why_here) = match recipients(&cfg.to, r) {
        Ok(to) => (to, String::new()),
        Err(e) => {
            tracing::warn!(source = r.source, error = %e, "report sent to the sender address");
            (
                Mailboxes::from(from.clone()),
                format!("This report could not be addressed ({e}); it is sent to the sender address instead.\n\n"),
            )
        }
    };
    let unaddressed = if why_here.is_empty() {
        ""
    } else {
        "[unaddressed] "
    };
    let mut b = Message::builder().from(from).subject(format!(
        "{unaddressed}{} {}: {}",
        r.source, r.version, r.verdict
    ));
    for m in to {
        b = b.to(m);
    }
    let body = format!(
        "{why_here}Source:  {} {}\nVerdict: {}\nResult:  {}\n\nSummary:\n{}\n\nLast {} lines of the transcript (all of it is attached as log.gz):\n\n{}\n",
        r.source,
        r.version,
        r.verdict,
        r.result_dir.display(),
        r.summary.trim_end(),
        cfg.tail_lines,
        tail(r.log, cfg.tail_lines)
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, r.log).map_err(|e| e.to_string())?;
    let gz = gz.finish().map_err(|e| e.to_string())?;
    let gzip = ContentType::parse("application/gzip").map_err(|e| e.to_string())?;
    b.multipart(
        MultiPart::mixed()
            .singlepart(SinglePart::plain(body))
            .singlepart(Attachment::new("log.gz".into()).body(gz, gzip)),
    )
    .map_err(|e| format!("cannot compose the report of {}: {e}", r.source))
}

fn transport(smtp: &str) -> Result<SmtpTransport, String> {
    let (host, port) = smtp
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("SMTP server {smtp:?}: expected HOST:PORT"))?;
    Ok(SmtpTransport::builder_dangerous(host)
        .port(port)
        .timeout(Some(Duration::from_secs(30)))
        .build())
}

/// Spools `msg`, then tries to send everything spooled. Returns how many
/// messages are still waiting.
pub fn send(cfg: &MailConfig, msg: &Message) -> Result<usize, String> {
    spool(&cfg.spool, msg)?;
    flush(cfg)
}

/// Puts `msg` in the spool; the envelope first, so that a message file
/// always has one.
pub fn spool(dir: &Path, msg: &Message) -> Result<PathBuf, String> {
    let env = msg.envelope();
    let spooled = Spooled {
        from: env.from().map(|a| a.to_string()).unwrap_or_default(),
        to: env.to().iter().map(|a| a.to_string()).collect(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let base = dir.join(format!(
        "{:020}.{:09}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    ));
    let env_json = serde_json::to_string(&spooled).map_err(|e| e.to_string())?;
    write_atomic(&base.with_extension("envelope"), env_json.as_bytes())?;
    let eml = base.with_extension("eml");
    write_atomic(&eml, &msg.formatted())?;
    Ok(eml)
}

/// Messages in the spool, oldest first.
pub fn spooled(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    v.sort();
    v
}

/// Sends what is spooled, oldest first. A message the server refuses for
/// good (5xx) is set aside as `*.eml.rejected` and the next one is tried;
/// one it defers (4xx) stays and the next one is tried; when the server
/// cannot be reached at all, the rest waits for the next flush.
/// Returns how many messages are still waiting.
pub fn flush(cfg: &MailConfig) -> Result<usize, String> {
    let waiting = spooled(&cfg.spool);
    if waiting.is_empty() {
        return Ok(0);
    }
    let t = transport(&cfg.smtp)?;
    let mut deferred = 0;
    for (i, eml) in waiting.iter().enumerate() {
        let env_path = eml.with_extension("envelope");
        let read = || -> Result<(Envelope, Vec<u8>), String> {
            let env: Spooled = serde_json::from_slice(
                &fs::read(&env_path).map_err(|e| format!("{}: {e}", env_path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", env_path.display()))?;
            let parse = |a: &str| {
                a.parse()
                    .map_err(|e| format!("{}: address {a:?}: {e}", env_path.display()))
            };
            let to = env.to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?;
            let from = if env.from.is_empty() {
                None
            } else {
                Some(parse(&env.from)?)
            };
            let envelope = Envelope::new(from, to).map_err(|e| e.to_string())?;
            let data = fs::read(eml).map_err(|e| format!("{}: {e}", eml.display()))?;
            Ok((envelope, data))
        };
        let (envelope, data) = match read() {
            Ok(x) => x,
            Err(e) => {
                // Kept, under a name the spool no longer retries, for a human.
                let _ = fs::rename(eml, eml.with_extension("eml.unreadable"));
                tracing::error!(message = %eml.display(), error = %e, "spooled mail unreadable; set aside");
                continue;
            }
        };
        match t.send_raw(&envelope, &data) {
            Ok(_) => {
                fs::remove_file(eml).map_err(|e| format!("{}: {e}", eml.display()))?;
                let _ = fs::remove_file(&env_path);
            }
            Err(e) if e.is_permanent() => {
                let aside = eml.with_extension("eml.rejected");
                fs::rename(eml, &aside).map_err(|e| format!("{}: {e}", eml.display()))?;
                tracing::error!(server = %cfg.smtp, error = %e, message = %aside.display(),
                    "mail refused by the server; set aside");
            }
            Err(e) if e.is_transient() => {
                deferred += 1;
                tracing::warn!(server = %cfg.smtp, error = %e, message = %eml.display(),
                    "mail deferred by the server; kept in the spool");
            }
            Err(e) => {
                let left = deferred + waiting.len() - i;
                tracing::warn!(server = %cfg.smtp, error = %e, waiting = left, "mail not sent; kept in the spool");
                return Ok(left);
            }
        }
    }
    Ok(deferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(m: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut c = serde_json::Map::new();
        c.insert("Maintainer".into(), m.into());
        c.insert(
            "Uploaders".into(),
            "A B <a@example.org>, \"C, D\" <c@example.org>".into(),
        );
        c
    }

    fn report<'a>(c: &'a serde_json::Map<String, serde_json::Value>) -> Report<'a> {
        Report {
            source: "hello",
            version: "2.10-3",
            verdict: "PASS",
            summary: "t PASS\n",
            log: b"one\ntwo\nthree\n",
            control: c,
            result_dir: Path::new("r"),
        }
    }

    #[test]
    fn recipients_come_from_the_control_data_by_template() {
        let c = control("Santiago Vila <sanvila@debian.org>");
        let to = |t: &str| {
            recipients(t, &report(&c))
                .unwrap()
                .iter()
                .map(|m| m.email.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(to("{maintainer}"), ["sanvila@debian.org"]);
        assert_eq!(
            to("{source}@tracker.debian.org"),
            ["hello@tracker.debian.org"]
        );
        assert_eq!(
            to("{maintainer}, {uploaders}"),
            ["sanvila@debian.org", "a@example.org", "c@example.org"]
        );
        let empty = serde_json::Map::new();
        let e = recipients("{maintainer}", &report(&empty)).unwrap_err();
        assert!(e.contains("no Maintainer field"), "{e}");
        assert!(check_template("{source}@x").is_ok());
        assert!(check_template("{nope}@x")
            .unwrap_err()
            .contains("unknown placeholder"));
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail(b"a\n", 5), "a");
    }

    #[test]
    fn an_unreachable_server_keeps_the_message_spooled() {
        let d = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = MailConfig {
            smtp: format!("127.0.0.1:{port}"),
            from: "runner@example.org".into(),
            to: "{maintainer}".into(),
            tail_lines: 2,
            spool: d.path().join("spool"),
        };
        let c = control("M <m@example.org>");
        let msg = compose(&cfg, &report(&c)).unwrap();
        assert_eq!(send(&cfg, &msg).unwrap(), 1);
        assert_eq!(spooled(&cfg.spool).len(), 1);
        assert_eq!(
            send(&cfg, &msg).unwrap(),
            2,
            "the second waits behind the first"
        );
    }
}
