//! The D-Bus adapter: unpacks a call, asks the bus who the caller is and
//! polkit whether it may, hands the call to the engine, and maps engine
//! errors to D-Bus error names. It never runs a command itself.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use zbus::message::Header;
use zbus::{interface, DBusError};
use zbus_polkit::policykit1::{AuthorityProxy, Subject};

use crate::engine::{Caller, Engine, EngineError};
use crate::host::{Host, Tools};
use crate::names::POLKIT_ACTION;

/// Errors as the caller sees them. The names are public interface (see
/// `adt_privd::names::errors`).
#[derive(Debug, DBusError)]
#[zbus(prefix = "org")]
pub enum Xen1Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    #[zbus(name = "freedesktop.DBus.Error.AccessDenied")]
    AccessDenied(String),
    #[zbus(name = "freedesktop.DBus.Error.InvalidArgs")]
    InvalidArgs(String),
    #[zbus(name = "autopkgtest.Xen1.Error.NoFreeSlot")]
    NoFreeSlot(String),
    #[zbus(name = "autopkgtest.Xen1.Error.LimitExceeded")]
    LimitExceeded(String),
    #[zbus(name = "autopkgtest.Xen1.Error.CommandFailed")]
    CommandFailed(String),
    #[zbus(name = "autopkgtest.Xen1.Error.BadState")]
    BadState(String),
    #[zbus(name = "autopkgtest.Xen1.Error.Internal")]
    Internal(String),
}

impl From<EngineError> for Xen1Error {
    fn from(e: EngineError) -> Self {
        let text = e.to_string();
        match e {
            EngineError::Malformed { .. }
            | EngineError::UnknownImage(_)
            | EngineError::UnknownTestbed(_) => Xen1Error::InvalidArgs(text),
            EngineError::NotOwner { .. } => Xen1Error::AccessDenied(text),
            EngineError::NoFreeSlot { .. } => Xen1Error::NoFreeSlot(text),
            EngineError::LimitExceeded { .. } => Xen1Error::LimitExceeded(text),
            EngineError::BadState { .. } | EngineError::ShuttingDown => Xen1Error::BadState(text),
            EngineError::Command(_) => Xen1Error::CommandFailed(text),
            EngineError::Internal(_) => Xen1Error::Internal(text),
        }
    }
}

pub struct Xen1 {
    engine: Arc<Engine<Tools>>,
    dbus: zbus::fdo::DBusProxy<'static>,
    polkit: AuthorityProxy<'static>,
}

impl Xen1 {
    /// Proxies made once: a call then costs two round trips (uid, polkit).
    pub async fn new(conn: &zbus::Connection, engine: Arc<Engine<Tools>>) -> zbus::Result<Xen1> {
        let dbus = zbus::fdo::DBusProxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        let polkit = AuthorityProxy::builder(conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?;
        Ok(Xen1 {
            engine,
            dbus,
            polkit,
        })
    }

    async fn still_connected(&self, bus_name: &str) -> bool {
        let Ok(name) = zbus::names::BusName::try_from(bus_name) else {
            return false;
        };
        // Cannot tell: keep it; the watcher or SIGTERM will clean up.
        self.dbus.name_has_owner(name).await.unwrap_or(true)
    }

    /// Who is calling, and may they: the uid from the bus, then polkit.
    async fn authorize(&self, header: &Header<'_>, method: &str) -> Result<Caller, Xen1Error> {
        let sender = header
            .sender()
            .ok_or_else(|| Xen1Error::AccessDenied("the call has no sender".into()))?
            .to_owned();
        let uid = self
            .dbus
            .get_connection_unix_user(sender.clone().into())
            .await
            .map_err(|e| Xen1Error::AccessDenied(format!("cannot tell who {sender} is: {e}")))?;
        let subject = Subject::new_for_message_header(header)
            .map_err(|e| Xen1Error::AccessDenied(format!("no polkit subject for {sender}: {e}")))?;
        let details = HashMap::new();
        let result = self
            .polkit
            .check_authorization(&subject, POLKIT_ACTION, &details, Default::default(), "")
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "polkit check failed");
                Xen1Error::AccessDenied(format!("polkit could not be asked: {e}"))
            })?;
        if !result.is_authorized {
            tracing::warn!(uid, caller = %sender, method, "denied by polkit");
            return Err(Xen1Error::AccessDenied(format!(
                "uid {uid} is not authorized for {POLKIT_ACTION} (polkit); \
                 an administrator grants it, e.g. to the group autopkgtest"
            )));
        }
        Ok(Caller {
            uid,
            bus_name: sender.to_string(),
        })
    }
}

#[interface(name = "org.autopkgtest.Xen1")]
impl Xen1 {
    async fn create_snapshot(
        &self,
        #[zbus(header)] header: Header<'_>,
        image: String,
    ) -> Result<String, Xen1Error> {
        let caller = self.authorize(&header, "CreateSnapshot").await?;
        let snapshot = self.engine.create_snapshot(&caller, &image).await?;
        // A caller that went away before its testbed was in the table was
        // missed by the disconnection watcher; from now on it will not be.
        if !self.still_connected(&caller.bus_name).await {
            tracing::info!(testbed = %snapshot, owner = %caller.bus_name, "caller left during create");
            self.engine.teardown_owner(&caller.bus_name).await;
        }
        Ok(snapshot)
    }

    async fn remove_snapshot(
        &self,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
    ) -> Result<(), Xen1Error> {
        let caller = self.authorize(&header, "RemoveSnapshot").await?;
        Ok(self.engine.remove_snapshot(&caller, &snapshot).await?)
    }

    async fn resume_domain(
        &self,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
    ) -> Result<(String, String), Xen1Error> {
        let caller = self.authorize(&header, "ResumeDomain").await?;
        Ok(self.engine.resume_domain(&caller, &snapshot).await?)
    }

    async fn destroy_domain(
        &self,
        #[zbus(header)] header: Header<'_>,
        domain: String,
    ) -> Result<(), Xen1Error> {
        let caller = self.authorize(&header, "DestroyDomain").await?;
        Ok(self.engine.destroy_domain(&caller, &domain).await?)
    }

    /// Read-only and not polkit-checked: it changes nothing and reveals
    /// only names, states, addresses and uids.
    async fn list_testbeds(&self) -> Vec<(String, String, String, String, u32)> {
        self.engine.list()
    }
}

/// Subscribe to disconnections; done before the bus name is owned, so
/// no caller can connect, create and leave unseen.
pub async fn subscribe_disconnections(
    conn: &zbus::Connection,
) -> zbus::Result<zbus::fdo::NameOwnerChangedStream> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    dbus.receive_name_owner_changed().await
}

/// Tear down a caller's testbeds as soon as its connection goes away.
pub async fn watch_disconnections<H: Host>(
    mut changes: zbus::fdo::NameOwnerChangedStream,
    engine: Arc<Engine<H>>,
) -> zbus::Result<()> {
    while let Some(signal) = changes.next().await {
        let Ok(args) = signal.args() else { continue };
        // A unique name losing its owner is a connection that closed.
        if args.name().starts_with(':') && args.new_owner().is_none() {
            let name = args.name().to_string();
            let engine = engine.clone();
            tokio::spawn(async move { engine.teardown_owner(&name).await });
        }
    }
    Ok(())
}
