//! A client of adt-privd running as a given user (`setpriv`), holding one
//! bus connection for its lifetime; see src/bin/privd-client.rs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::bins::binary;
use crate::bus::SystemBus;
use crate::kill;

pub struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The answer to one call.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    Err { name: String, message: String },
}

impl Reply {
    pub fn ok(self) -> String {
        match self {
            Reply::Ok(v) => v,
            e => panic!("expected success, got {e:?}"),
        }
    }
    pub fn error_name(&self) -> &str {
        match self {
            Reply::Err { name, .. } => name,
            Reply::Ok(v) => panic!("expected an error, got ok {v:?}"),
        }
    }
}

impl Client {
    /// Connect as `user` (by name), or as root when `user` is None.
    pub fn connect(bus: &SystemBus, user: Option<&str>) -> Client {
        let exe = binary("privd-client");
        let mut command = match user {
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .arg(&bus.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("privd-client");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Client {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One call: `method` with `arg` (spaces and all).
    pub fn call(&mut self, method: &str, arg: &str) -> Reply {
        writeln!(self.stdin, "{method} {arg}").expect("client stdin");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client stdout");
        let line = line.trim_end();
        if let Some(value) = line.strip_prefix("ok") {
            return Reply::Ok(value.trim_start().to_owned());
        }
        let rest = line
            .strip_prefix("err ")
            .unwrap_or_else(|| panic!("client said {line:?}"));
        let (name, message) = rest.split_once(' ').unwrap_or((rest, ""));
        Reply::Err {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Write one line and expect no answer.
    pub fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("client stdin");
        self.stdin.flush().unwrap();
    }

    /// Wait for the client to exit by itself.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// Kill the client process outright (its connection drops).
    pub fn kill9(mut self) {
        kill(&mut self.child, nix::sys::signal::Signal::SIGKILL);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        kill(&mut self.child, nix::sys::signal::Signal::SIGKILL);
    }
}
