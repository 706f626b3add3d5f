//! The e-mail reporter against a real SMTP server on loopback (Debian's
//! aiosmtpd saving into a Maildir): the received message's headers, body
//! and attachment; and with the server down, the report waits in the spool
//! and arrives once the server is up.

mod common;

use std::path::Path;

use adt_runner::report::mail::{self, MailConfig};
use adt_runner::report::Reporters;
use adt_runner::results::Store;
use common::{free_port, output_dir, Smtp};

const LOG: &str = "adt-runner [08:00:00]: starting\nline 2\nline 3\nsmoke                FAIL non-zero exit status 1\n";
const SUMMARY: &str = "smoke                FAIL non-zero exit status 1\n";

/// A stored result of hello 2.10-3 whose control data names its maintainer.
fn stored(root: &Path) -> std::path::PathBuf {
    let out = root.join("out");
    output_dir(&out, "hello", "2.10-3", 4, SUMMARY, LOG);
    let store = Store {
        root: root.join("results"),
        release: "bookworm".into(),
        arch: "amd64".into(),
    };
    let request = serde_json::json!({
        "source": "hello",
        "control": {"Maintainer": "Santiago Vila <sanvila@debian.org>"},
    });
    store
        .store("hello", &out, &request.to_string())
        .unwrap()
        .dir
}

/// A stored result of `source` with these control fields.
fn stored_as(root: &Path, source: &str, control: serde_json::Value) -> std::path::PathBuf {
    let out = root.join(format!("out-{source}"));
    output_dir(&out, source, "1.0-1", 4, SUMMARY, LOG);
    let store = Store {
        root: root.join("results"),
        release: "bookworm".into(),
        arch: "amd64".into(),
    };
    let request = serde_json::json!({"source": source, "control": control});
    store.store(source, &out, &request.to_string()).unwrap().dir
}

fn reporters(port: u16, spool: &Path, to: &str) -> Reporters {
    Reporters {
        programs: vec![],
        mail: Some(MailConfig {
            smtp: format!("127.0.0.1:{port}"),
            from: "adt-runner <runner@ci.example.org>".into(),
            to: to.into(),
            tail_lines: 2,
            spool: spool.to_path_buf(),
        }),
    }
}

#[test]
fn a_report_arrives_with_headers_body_and_the_log_attached() {
    let d = tempfile::tempdir().unwrap();
    let dir = stored(d.path());
    let smtp = Smtp::start(free_port(), &d.path().join("maildir"));
    let r = reporters(smtp.port, &d.path().join("spool"), "{maintainer}");
    r.report(&dir, "REGRESSION (exit code 4)").unwrap();

    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let m = &msgs[0];
    assert_eq!(m["to"], "Santiago Vila <sanvila@debian.org>");
    assert_eq!(m["from"], "adt-runner <runner@ci.example.org>");
    assert_eq!(m["subject"], "hello 2.10-3: REGRESSION (exit code 4)");
    let body = m["body"].as_str().unwrap();
    assert!(body.contains(SUMMARY.trim_end()), "summary in body: {body}");
    assert!(
        body.contains("line 3\nsmoke                FAIL non-zero exit status 1"),
        "the transcript's last two lines: {body}"
    );
    assert!(!body.contains("line 2"), "only the tail: {body}");
    assert!(body.contains(&dir.display().to_string()), "{body}");
    let att = &m["attachments"][0];
    assert_eq!(att["name"], "log.gz");
    assert_eq!(att["type"], "application/gzip");
    assert_eq!(att["text"], LOG, "the whole transcript, gunzipped");
    assert!(mail::spooled(&d.path().join("spool")).is_empty());
}

#[test]
fn with_the_server_down_the_report_is_spooled_and_sent_once_it_is_up() {
    let d = tempfile::tempdir().unwrap();
    let dir = stored(d.path());
    let port = free_port();
    let spool = d.path().join("spool");
    let r = reporters(port, &spool, "{source}@tracker.example.org");
    r.report(&dir, "PASS (exit code 0)").unwrap();
    r.report(&dir, "PASS (exit code 0)").unwrap();
    assert_eq!(mail::spooled(&spool).len(), 2, "both wait in the spool");

    let smtp = Smtp::start(port, &d.path().join("maildir"));
    assert_eq!(mail::flush(r.mail.as_ref().unwrap()).unwrap(), 0);
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    for m in &msgs {
        assert_eq!(m["to"], "hello@tracker.example.org");
        assert_eq!(m["subject"], "hello 2.10-3: PASS (exit code 0)");
    }
    assert!(mail::spooled(&spool).is_empty());
    assert_eq!(mail::flush(r.mail.as_ref().unwrap()).unwrap(), 0);
    assert_eq!(smtp.messages().len(), 2, "nothing is sent twice");
}

#[test]
fn reporter_programs_get_the_result_directory() {
    let d = tempfile::tempdir().unwrap();
    let dir = stored(d.path());
    let seen = d.path().join("seen");
    let r = Reporters {
        programs: vec![format!(
            "echo \"$ADT_SOURCE $ADT_VERSION $ADT_VERDICT\" > {} && ls",
            seen.display()
        )],
        mail: None,
    };
    r.report(&dir, "PASS (exit code 0)").unwrap();
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap(),
        "hello 2.10-3 PASS (exit code 0)\n"
    );
    let failing = Reporters {
        programs: vec!["false".into()],
        mail: None,
    };
    let e = failing.report(&dir, "PASS").unwrap_err();
    assert!(e.contains("reporter \"false\""), "{e}");
}

#[test]
fn a_refused_message_is_set_aside_and_does_not_hold_up_the_others() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let spool = d.path().join("spool");
    let r = reporters(port, &spool, "{maintainer}");
    // Spooled while the server is down: the refused one first, so that
    // it is the oldest and would block the queue.
    let refused = stored_as(
        d.path(),
        "refused",
        serde_json::json!({"Maintainer": "Gone <nobody-here@example.org>"}),
    );
    let fine = stored_as(
        d.path(),
        "fine",
        serde_json::json!({"Maintainer": "Here <someone@example.org>"}),
    );
    r.report(&refused, "PASS (exit code 0)").unwrap();
    r.report(&fine, "PASS (exit code 0)").unwrap();
    assert_eq!(mail::spooled(&spool).len(), 2);

    let smtp = Smtp::start_refusing(port, &d.path().join("maildir"), "nobody-here");
    assert_eq!(mail::flush(r.mail.as_ref().unwrap()).unwrap(), 0);
    let msgs = smtp.messages();
    assert_eq!(
        msgs.len(),
        1,
        "the message behind the refused one arrives: {msgs:?}"
    );
    assert_eq!(msgs[0]["to"], "Here <someone@example.org>");
    assert!(mail::spooled(&spool).is_empty());
    let aside: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml.rejected"))
        .collect();
    assert_eq!(aside.len(), 1, "the refused message is kept for the admin");
    let text = std::fs::read_to_string(spool.join(&aside[0])).unwrap();
    assert!(text.contains("Subject: refused 1.0-1"), "{text}");
    // Set aside means not retried.
    assert_eq!(mail::flush(r.mail.as_ref().unwrap()).unwrap(), 0);
    assert_eq!(smtp.messages().len(), 1);
}

#[test]
fn a_report_the_template_cannot_address_goes_to_the_sender() {
    let d = tempfile::tempdir().unwrap();
    let dir = stored_as(d.path(), "nomaint", serde_json::json!({}));
    let smtp = Smtp::start(free_port(), &d.path().join("maildir"));
    let r = reporters(smtp.port, &d.path().join("spool"), "{maintainer}");
    r.report(&dir, "REGRESSION (exit code 4)").unwrap();
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["to"], "adt-runner <runner@ci.example.org>");
    assert_eq!(
        msgs[0]["subject"],
        "[unaddressed] nomaint 1.0-1: REGRESSION (exit code 4)"
    );
    let body = msgs[0]["body"].as_str().unwrap();
    assert!(body.contains("no Maintainer field"), "says why: {body}");
    assert!(body.contains(SUMMARY.trim_end()), "{body}");
}
