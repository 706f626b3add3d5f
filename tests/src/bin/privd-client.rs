//! A line-driven client of adt-privd for the system tests: it keeps one
//! bus connection (so its death is a disconnection), reads one call per
//! line on stdin (`METHOD ARG`, the argument being the rest of the line,
//! spaces included) and answers one line per call:
//! `ok VALUE...` or `err ERROR.NAME message`.
//! `Own NAME` asks the bus for a well-known name (to test the bus policy).
//! `Fire METHOD ARG` sends the call and exits 300 ms later without waiting
//! for the reply (a caller that dies mid-call).

use std::io::{BufRead, Write};

use adt_privd::Xen1Proxy;

fn main() {
    let address = std::env::args()
        .nth(1)
        .expect("usage: privd-client BUS-ADDRESS");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .expect("bus address")
            .build()
            .await
            .expect("connect to the bus");
        let proxy = Xen1Proxy::new(&conn).await.expect("proxy");
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let line = line.expect("stdin");
            let (method, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            if method == "Fire" {
                fire_and_exit(&conn, arg).await;
            }
            let reply = call(&conn, &proxy, method, arg).await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", reply.replace('\n', " ")).unwrap();
            out.flush().unwrap();
        }
    });
}

async fn call(conn: &zbus::Connection, proxy: &Xen1Proxy<'_>, method: &str, arg: &str) -> String {
    let result = match method {
        "CreateSnapshot" => proxy.create_snapshot(arg).await,
        "RemoveSnapshot" => proxy.remove_snapshot(arg).await.map(|()| String::new()),
        "ResumeDomain" => proxy
            .resume_domain(arg)
            .await
            .map(|(d, a)| format!("{d} {a}")),
        "DestroyDomain" => proxy.destroy_domain(arg).await.map(|()| String::new()),
        "ListTestbeds" => proxy
            .list_testbeds()
            .await
            .map(|l| serde_json::to_string(&l).unwrap()),
        "Own" => conn.request_name(arg).await.map(|()| String::new()),
        other => return format!("err client.UnknownMethod {other}"),
    };
    match result {
        Ok(value) => format!("ok {value}").trim_end().to_owned(),
        Err(zbus::Error::MethodError(name, message, _)) => {
            format!("err {} {}", name.as_str(), message.unwrap_or_default())
        }
        Err(zbus::Error::FDO(e)) => {
            use zbus::DBusError;
            format!("err {} {}", e.name(), e.description().unwrap_or_default())
        }
        Err(e) => format!("err client.Error {e}"),
    }
}

async fn fire_and_exit(conn: &zbus::Connection, call: &str) -> ! {
    let (method, arg) = call.split_once(' ').unwrap_or((call, ""));
    let message = zbus::Message::method_call(adt_privd::OBJECT_PATH, method)
        .and_then(|m| m.destination(adt_privd::BUS_NAME))
        .and_then(|m| m.interface(adt_privd::INTERFACE))
        .and_then(|m| m.build(&(arg,)))
        .expect("a method call");
    conn.send(&message).await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::process::exit(0);
}
