//! The D-Bus adapter: unpacks a call, asks the bus who the caller is and
//! polkit whether it may, hands the call to the engine, and maps engine
//! errors to D-Bus error names. It never runs a command itself.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::message::Header;
use zbus::{interface, DBusError};
use zbus_polkit::policykit1::{AuthorityProxy, Subject};

use crate::engine::{excerpt, Caller, Engine, EngineError};
use crate::host::{Host, Tools};
use crate::names::{MAX_NAME_LEN, POLKIT_ACTION};

/// How long a call waits for polkit's answer before it fails.
const POLKIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls of one uid (root aside) waiting for polkit at once: beyond it a
/// call fails at once, so one user cannot use up the daemon's pending
/// replies on the bus and make everybody else's calls fail.
const MAX_PENDING_PER_UID: usize = 16;

/// Refuse an argument longer than any valid name, before any other work
/// (no bus round trip, no polkit): the message names the method, the
/// argument and its length, and repeats at most a short excerpt of it.
fn check_length(method: &str, what: &str, arg: &str) -> Result<(), Xen1Error> {
    if arg.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    Err(Xen1Error::InvalidArgs(format!(
        "{method}: argument {what} is {} bytes long; names are at most {MAX_NAME_LEN} bytes \
         (it begins {})",
        arg.len(),
        excerpt(arg)
    )))
}

/// Wait at most `limit` for polkit; failing to ask it is the daemon's
/// problem (Internal), not a refusal.
async fn ask_polkit<T, E: Display>(
    check: impl Future<Output = Result<T, E>>,
    limit: Duration,
) -> Result<T, Xen1Error> {
    match tokio::time::timeout(limit, check).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "polkit check failed");
            Err(Xen1Error::Internal(format!(
                "polkit could not be asked (CheckAuthorization of {POLKIT_ACTION}): {e}"
            )))
        }
        Err(_) => {
            tracing::error!(seconds = limit.as_secs(), "polkit did not answer");
            Err(Xen1Error::Internal(format!(
                "polkit did not answer CheckAuthorization of {POLKIT_ACTION} within {} s",
                limit.as_secs()
            )))
        }
    }
}

/// Whether a caller is still on the bus, from a GetNameOwner answer.
/// Only "no owner" means gone; any other failure cannot tell, and the
/// caller is kept: if the bus itself is lost, the daemon tears everything
/// down anyway, and otherwise the disconnection watcher still sees it go.
fn still_there<T>(answer: Result<T, zbus::fdo::Error>) -> bool {
    match answer {
        Ok(_) => true,
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => false,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether a caller is still connected");
            true
        }
    }
}

/// Calls waiting for polkit, per uid.
#[derive(Default)]
struct Pending(Mutex<HashMap<u32, usize>>);

/// One call counted in [`Pending`] until dropped.
struct PendingCall<'a> {
    pending: &'a Pending,
    uid: u32,
}

impl Pending {
    fn enter(&self, uid: u32, method: &str) -> Result<PendingCall<'_>, Xen1Error> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(uid).or_insert(0);
        if uid != 0 && *count >= MAX_PENDING_PER_UID {
            return Err(Xen1Error::LimitExceeded(format!(
                "{method}: uid {uid} already has {MAX_PENDING_PER_UID} calls waiting for polkit; \
                 try again when they are answered"
            )));
        }
        *count += 1;
        Ok(PendingCall { pending: self, uid })
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        let mut map = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

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
    pending: Pending,
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
            pending: Pending::default(),
        })
    }

    async fn still_connected(&self, bus_name: &str) -> bool {
        let Ok(name) = zbus::names::BusName::try_from(bus_name) else {
            return false;
        };
        still_there(self.dbus.get_name_owner(name).await)
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
        let _pending = self.pending.enter(uid, method)?;
        let result = ask_polkit(
            self.polkit.check_authorization(
                &subject,
                POLKIT_ACTION,
                &details,
                Default::default(),
                "",
            ),
            POLKIT_TIMEOUT,
        )
        .await?;
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
        check_length("CreateSnapshot", "image", &image)?;
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
        check_length("RemoveSnapshot", "snapshot", &snapshot)?;
        let caller = self.authorize(&header, "RemoveSnapshot").await?;
        Ok(self.engine.remove_snapshot(&caller, &snapshot).await?)
    }

    async fn resume_domain(
        &self,
        #[zbus(header)] header: Header<'_>,
        snapshot: String,
    ) -> Result<(String, String), Xen1Error> {
        check_length("ResumeDomain", "snapshot", &snapshot)?;
        let caller = self.authorize(&header, "ResumeDomain").await?;
        Ok(self.engine.resume_domain(&caller, &snapshot).await?)
    }

    async fn destroy_domain(
        &self,
        #[zbus(header)] header: Header<'_>,
        domain: String,
    ) -> Result<(), Xen1Error> {
        check_length("DestroyDomain", "domain", &domain)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_argument_is_refused_with_a_short_message() {
        assert!(check_length("CreateSnapshot", "image", &"a".repeat(MAX_NAME_LEN)).is_ok());
        let huge = "\x01".repeat(8 << 20);
        let Err(Xen1Error::InvalidArgs(text)) = check_length("CreateSnapshot", "image", &huge)
        else {
            panic!("not InvalidArgs")
        };
        assert!(text.len() < 600, "{} bytes", text.len());
        assert!(
            text.starts_with("CreateSnapshot: argument image is 8388608 bytes long"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn polkit_failing_or_hanging_is_internal_not_access_denied() {
        let failed = ask_polkit(
            async { Err::<bool, _>("org.freedesktop.DBus.Error.LimitsExceeded") },
            Duration::from_secs(1),
        )
        .await;
        assert!(
            matches!(&failed, Err(Xen1Error::Internal(m)) if m.contains("LimitsExceeded")),
            "{failed:?}"
        );
        let hung = ask_polkit(
            std::future::pending::<Result<bool, String>>(),
            Duration::from_millis(50),
        )
        .await;
        assert!(
            matches!(&hung, Err(Xen1Error::Internal(m)) if m.contains("did not answer")),
            "{hung:?}"
        );
        assert!(matches!(
            ask_polkit(async { Ok::<_, String>(true) }, Duration::from_secs(1)).await,
            Ok(true)
        ));
    }

    #[test]
    fn only_no_owner_means_the_caller_is_gone() {
        assert!(still_there(Ok(())));
        assert!(!still_there::<()>(Err(zbus::fdo::Error::NameHasNoOwner(
            "gone".into()
        ))));
        assert!(still_there::<()>(Err(zbus::fdo::Error::Failed("?".into()))));
    }

    #[test]
    fn one_uid_cannot_hold_more_than_its_share_of_polkit_calls() {
        let pending = Pending::default();
        let held: Vec<_> = (0..MAX_PENDING_PER_UID)
            .map(|_| pending.enter(65534, "CreateSnapshot").unwrap())
            .collect();
        assert!(matches!(
            pending.enter(65534, "CreateSnapshot"),
            Err(Xen1Error::LimitExceeded(_))
        ));
        // Others are not affected, root never limited.
        let _other = pending.enter(1000, "CreateSnapshot").unwrap();
        let _root: Vec<_> = (0..MAX_PENDING_PER_UID + 1)
            .map(|_| pending.enter(0, "CreateSnapshot").unwrap())
            .collect();
        drop(held);
        assert!(pending.enter(65534, "CreateSnapshot").is_ok());
    }
}
