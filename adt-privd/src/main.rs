//! adt-privd: the root helper of autopkgtest-xen. Serves
//! `org.autopkgtest.Xen1` on the system bus (or `--bus ADDRESS`), offering
//! only dm snapshot create/remove and Xen domain resume/destroy, each call
//! checked with polkit.

mod engine;
mod host;
mod ledger;
mod service;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use adt_privd::cli::Args;
use tokio::signal::unix::{signal, SignalKind};

use adt_privd::config::Config;
use adt_privd::names::{BUS_NAME, OBJECT_PATH};
use adt_privd::{names, privileges};
use engine::Engine;
use ledger::Ledger;

fn init_logging() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADT_PRIVD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let journal = std::path::Path::new("/run/systemd/journal/socket")
        .exists()
        .then(|| tracing_journald::layer().ok())
        .flatten();
    match journal {
        Some(layer) => tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init(),
        None => tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("adt-privd: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists: capabilities are per thread.
    if let Err(e) = privileges::drop_capabilities() {
        eprintln!("adt-privd: cannot drop capabilities: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("adt-privd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, args.bus)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "adt-privd stopped");
            eprintln!("adt-privd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, bus: Option<String>) -> Result<(), String> {
    let ledger = Ledger::open(&config.ledger_dir).map_err(|e| {
        format!(
            "cannot open the ledger {}: {e}",
            config.ledger_dir.display()
        )
    })?;
    let tools = host::Tools {
        dmsetup: config.tools.dmsetup.clone(),
        xl: config.tools.xl.clone(),
        timeout: config.limits.command_timeout(),
        restore_timeout: config.limits.restore_timeout(),
        remove_retries: config.limits.remove_retries,
    };
    let engine = Arc::new(Engine::new(tools, config, ledger));

    // Clean up after a crash before taking any call.
    let left = engine.reconcile().await;
    if !left.is_empty() {
        tracing::error!(
            ?left,
            "leftovers could not be torn down; their slots may fail"
        );
    }

    // Handle signals from here on, so a SIGTERM never skips the teardown.
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    let builder = match &bus {
        Some(address) => zbus::connection::Builder::address(address.as_str()),
        None => zbus::connection::Builder::system(),
    }
    .map_err(|e| format!("bad bus address: {e}"))?;
    let conn = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to the bus: {e}"))?;
    let service = service::Xen1::new(&conn, engine.clone())
        .await
        .map_err(|e| format!("cannot reach the bus driver or polkit: {e}"))?;
    conn.object_server()
        .at(OBJECT_PATH, service)
        .await
        .map_err(|e| format!("cannot serve {OBJECT_PATH}: {e}"))?;
    let changes = service::subscribe_disconnections(&conn)
        .await
        .map_err(|e| format!("cannot watch for disconnections: {e}"))?;
    // The name last: no call arrives before everything is in place.
    conn.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME}: {e}"))?;
    tracing::info!(
        bus = bus.as_deref().unwrap_or("system"),
        "serving {BUS_NAME}"
    );

    let watcher = tokio::spawn(service::watch_disconnections(changes, engine.clone()));
    // A teardown that failed after its owner left (a device briefly busy)
    // is tried again every few seconds, not left until the next start.
    let retry = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.retry_orphans().await;
            }
        })
    };
    // A lost bus is a failure: exit non-zero after the teardown, so that
    // systemd (Restart=on-failure) starts the daemon again.
    let outcome = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: tearing everything down"); Ok(()) }
        _ = int.recv() => { tracing::info!("SIGINT: tearing everything down"); Ok(()) }
        r = watcher => {
            let why = match r {
                Ok(Ok(())) => "the bus closed the connection".to_owned(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("the disconnection watcher failed: {e}"),
            };
            tracing::error!(reason = %why, "lost the bus: tearing everything down");
            Err(format!("lost the bus ({why}); every testbed was torn down"))
        }
    };
    // Stop taking calls first, then tear down what exists.
    retry.abort();
    let _ = conn.release_name(BUS_NAME).await;
    engine.teardown_all().await;
    tracing::info!("all testbeds torn down; exiting");
    outcome
}
