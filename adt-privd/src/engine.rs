//! The engine: which testbeds exist, who owns them, and the order of the
//! host operations that create and tear them down.
//!
//! Rules kept here: callers name only images from the configuration and
//! handles the engine gave out; a testbed belongs to the uid that created
//! it; every resource is in the ledger before the command that creates it
//! runs; every teardown is idempotent; a failed resume leaves nothing.
//! Not for: D-Bus or polkit (see `service`), running tools (see `host`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::host::{Host, HostError};
use crate::ledger::{Ledger, Record};
use crate::names::{is_valid_name, resource_name, RESOURCE_PREFIX};
use adt_privd::config::Config;

/// Who is calling: the uid the bus vouches for and the unique bus name.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub bus_name: String,
}

impl Caller {
    fn may_touch(&self, record: &Record) -> bool {
        self.uid == 0 || self.uid == record.uid
    }
}

/// Longest part of a caller's input an error message repeats, in bytes.
pub const EXCERPT_BYTES: usize = 64;

/// `text` as an error message may show it: escaped, and cut after
/// [`EXCERPT_BYTES`] bytes (saying how long it was), so a huge argument
/// never makes a huge reply.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return format!("{text:?}");
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes in all)", &text[..end], text.len())
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what} {} is malformed: names must match ^[a-z0-9][a-z0-9.+-]{{0,62}}$", excerpt(.name))]
    Malformed { what: &'static str, name: String },
    #[error("unknown image {}: not in adt-privd's configuration", excerpt(.0))]
    UnknownImage(String),
    #[error("no testbed named {}", excerpt(.0))]
    UnknownTestbed(String),
    #[error("testbed {name} belongs to uid {owner}, not to uid {caller}")]
    NotOwner {
        name: String,
        owner: u32,
        caller: u32,
    },
    #[error("every slot of image {image} is in use ({slots} slots)")]
    NoFreeSlot { image: String, slots: usize },
    #[error("uid {uid} already holds {held} testbeds, the configured maximum")]
    LimitExceeded { uid: u32, held: usize },
    #[error("testbed {name}: {message}")]
    BadState { name: String, message: String },
    #[error("adt-privd is shutting down: it creates no more testbeds")]
    ShuttingDown,
    #[error("{0}")]
    Command(HostError),
    #[error("{0}")]
    Internal(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// One live testbed: its record and a lock that orders operations on it.
struct Entry {
    record: Record,
    op: Arc<tokio::sync::Mutex<()>>,
}

pub struct Engine<H: Host> {
    host: H,
    config: Config,
    ledger: Ledger,
    testbeds: Mutex<BTreeMap<String, Entry>>,
    /// Testbeds whose owner went away but whose teardown failed (a device
    /// briefly busy, a tool timing out): `retry_orphans` tries again, so
    /// they do not wait for a restart.
    orphans: Mutex<BTreeSet<String>>,
    /// Set, under the table lock, when the shutdown teardown starts: no
    /// testbed is created after it, so none outlives the daemon.
    closing: AtomicBool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("{what}: {e}"))
}

impl<H: Host> Engine<H> {
    pub fn new(host: H, config: Config, ledger: Ledger) -> Self {
        Engine {
            host,
            config,
            ledger,
            testbeds: Mutex::new(BTreeMap::new()),
            orphans: Mutex::new(BTreeSet::new()),
            closing: AtomicBool::new(false),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding this lock would be a bug; keep serving.
        self.testbeds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a free slot of `image` and create its snapshot.
    pub async fn create_snapshot(&self, caller: &Caller, image: &str) -> EngineResult<String> {
        if !is_valid_name(image) {
            return Err(EngineError::Malformed {
                what: "image",
                name: image.into(),
            });
        }
        let Some(config) = self.config.images.get(image) else {
            return Err(EngineError::UnknownImage(image.into()));
        };
        let (record, _guard) = self.reserve(caller, image, config.slots.len())?;
        let name = record.name.clone();
        tracing::info!(testbed = %name, uid = caller.uid, owner = %caller.bus_name, "creating snapshot");

        let result = self.make_snapshot(&record).await;
        if let Err((e, attempted)) = &result {
            tracing::warn!(testbed = %name, error = %e, "snapshot creation failed; rolling back");
            let freed = if *attempted {
                // dmsetup can fail after making the device (a timeout, a
                // failed resume). The name was free just before, and the
                // table reserves it, so a device of that name is ours:
                // remove it, and keep the slot if that fails (a restart
                // reconciles it from the ledger).
                self.teardown_resources(&record)
                    .await
                    .map_err(|he| he.to_string())
            } else {
                // Nothing was created: run no tool, so that a device of
                // that name that was there before (not ours) stays.
                self.ledger.remove(&name).map_err(|le| le.to_string())
            };
            match freed {
                Ok(()) => {
                    self.table().remove(&name);
                }
                Err(why) => {
                    tracing::error!(testbed = %name, error = %why, "rollback failed; the slot stays taken until adt-privd restarts")
                }
            }
        }
        result.map(|()| name).map_err(|(e, _)| e)
    }

    /// Pick the first free slot and claim it in memory, under the limits.
    fn reserve(
        &self,
        caller: &Caller,
        image: &str,
        slots: usize,
    ) -> EngineResult<(Record, tokio::sync::OwnedMutexGuard<()>)> {
        let mut table = self.table();
        if self.closing.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let held = table
            .values()
            .filter(|e| e.record.uid == caller.uid)
            .count();
        if caller.uid != 0 && held >= self.config.limits.max_per_uid {
            return Err(EngineError::LimitExceeded {
                uid: caller.uid,
                held,
            });
        }
        let slot = (0..slots)
            .find(|&s| !table.contains_key(&resource_name(image, s)))
            .ok_or(EngineError::NoFreeSlot {
                image: image.into(),
                slots,
            })?;
        let record = Record {
            name: resource_name(image, slot),
            image: image.into(),
            slot,
            uid: caller.uid,
            owner: caller.bus_name.clone(),
            created: now(),
            domain: false,
        };
        // Locked before it is visible, so no other call can act on it
        // until it exists.
        let op = Arc::new(tokio::sync::Mutex::new(()));
        let guard = op.clone().try_lock_owned().expect("a fresh lock is free");
        table.insert(
            record.name.clone(),
            Entry {
                record: record.clone(),
                op,
            },
        );
        Ok((record, guard))
    }

    /// Makes the snapshot; an error says whether `dmsetup create` ran (a
    /// device may then exist).
    async fn make_snapshot(&self, record: &Record) -> Result<(), (EngineError, bool)> {
        let table = self
            .prepare_snapshot(record)
            .await
            .map_err(|e| (e, false))?;
        self.host
            .dm_create(&record.name, &table)
            .await
            .map_err(|e| (EngineError::Command(e), true))
    }

    /// Everything before `dmsetup create`: the origin's size, the check
    /// that the name is free on the host, the ledger entry; returns the
    /// snapshot's table.
    async fn prepare_snapshot(&self, record: &Record) -> EngineResult<String> {
        let image = &self.config.images[&record.image];
        let slot = &image.slots[record.slot];
        let sectors = self
            .host
            .sectors(&image.origin)
            .await
            .map_err(EngineError::Command)?;
        // A device of this name that adt-privd did not create (it is not
        // in the table): refuse, and never touch it.
        if self
            .host
            .dm_exists(&record.name)
            .await
            .map_err(EngineError::Command)?
        {
            return Err(EngineError::BadState {
                name: record.name.clone(),
                message: "a device-mapper device of this name already exists on the host; \
                          adt-privd did not create it and leaves it alone (remove it, or restart \
                          adt-privd to reconcile leftovers)"
                    .into(),
            });
        }
        let table = format!(
            "0 {sectors} snapshot {} {} n {}",
            image.origin.display(),
            slot.cow.display(),
            image.chunk_sectors
        );
        self.ledger
            .write(record)
            .map_err(|e| internal("writing the ledger", e))?;
        Ok(table)
    }

    /// Find a testbed the caller may touch and lock it for one operation.
    async fn lock(
        &self,
        caller: &Caller,
        what: &'static str,
        name: &str,
    ) -> EngineResult<(Record, tokio::sync::OwnedMutexGuard<()>)> {
        if !is_valid_name(name) {
            return Err(EngineError::Malformed {
                what,
                name: name.into(),
            });
        }
        let op = {
            let table = self.table();
            let entry = table
                .get(name)
                .ok_or_else(|| EngineError::UnknownTestbed(name.into()))?;
            if !caller.may_touch(&entry.record) {
                return Err(EngineError::NotOwner {
                    name: name.into(),
                    owner: entry.record.uid,
                    caller: caller.uid,
                });
            }
            entry.op.clone()
        };
        let guard = op.clone().lock_owned().await;
        // It may have been torn down while we waited, and its slot even
        // taken again by a new testbed of the same name: that one has a
        // lock of its own, and this call was not meant for it.
        let record = self
            .table()
            .get(name)
            .filter(|e| Arc::ptr_eq(&e.op, &op))
            .map(|e| e.record.clone())
            .ok_or_else(|| EngineError::UnknownTestbed(name.into()))?;
        Ok((record, guard))
    }

    fn update(&self, record: &Record) -> EngineResult<()> {
        self.ledger
            .write(record)
            .map_err(|e| internal("writing the ledger", e))?;
        if let Some(entry) = self.table().get_mut(&record.name) {
            entry.record = record.clone();
        }
        Ok(())
    }

    /// Resume the slot's checkpoint on the snapshot; returns (domain, address).
    pub async fn resume_domain(
        &self,
        caller: &Caller,
        snapshot: &str,
    ) -> EngineResult<(String, String)> {
        let (mut record, _guard) = self.lock(caller, "snapshot", snapshot).await?;
        if record.domain {
            return Err(EngineError::BadState {
                name: record.name,
                message: "a domain is already running on it".into(),
            });
        }
        let slot = self.config.images[&record.image].slots[record.slot].clone();
        // A domain of this name that adt-privd did not resume: refuse,
        // and never touch it. Checked before the ledger says "domain", so
        // neither a rollback nor a teardown will destroy it.
        let domains = self.host.xl_list().await.map_err(EngineError::Command)?;
        if domains.contains(&record.name) {
            return Err(EngineError::BadState {
                name: record.name,
                message: "a Xen domain of this name already exists on the host; adt-privd did \
                          not start it and leaves it alone (destroy it, or restart adt-privd to \
                          reconcile leftovers)"
                    .into(),
            });
        }
        record.domain = true;
        self.update(&record)?;
        tracing::info!(testbed = %record.name, uid = caller.uid, "resuming domain");
        let result = match self
            .host
            .xl_restore(&slot.domain_config, &slot.checkpoint)
            .await
        {
            Err(e) => Err(EngineError::Command(e)),
            Ok(()) => self.check_running(&record.name).await,
        };
        match result {
            Ok(()) => Ok((record.name, slot.address)),
            Err(e) => {
                tracing::warn!(testbed = %record.name, error = %e, "resume failed; rolling back");
                match self.teardown_resources(&record).await {
                    Ok(()) => {
                        self.table().remove(&record.name);
                        Err(rolled_back(e))
                    }
                    Err(cleanup) => Err(EngineError::Command(HostError {
                        command: format!("rolling back {}", record.name),
                        reason: format!("{e}; then the rollback failed: {cleanup}"),
                    })),
                }
            }
        }
    }

    /// After `xl restore`, the domain must exist under the slot's name: a
    /// domain config that names it otherwise would escape every teardown.
    async fn check_running(&self, name: &str) -> EngineResult<()> {
        let domains = self.host.xl_list().await.map_err(EngineError::Command)?;
        if domains.iter().any(|d| d == name) {
            Ok(())
        } else {
            Err(EngineError::Command(HostError {
                command: "xl list".into(),
                reason: format!(
                    "xl restore succeeded but no domain {name} exists: the slot's domain_config \
                     must set name = \"{name}\""
                ),
            }))
        }
    }

    /// Destroy the domain; the snapshot stays. Destroying a domain that is
    /// already gone is success. Only a domain this daemon resumed is
    /// destroyed: with none, no tool runs.
    pub async fn destroy_domain(&self, caller: &Caller, domain: &str) -> EngineResult<()> {
        let (mut record, _guard) = self.lock(caller, "domain", domain).await?;
        if !record.domain {
            tracing::info!(testbed = %record.name, uid = caller.uid, "no domain resumed on it; nothing to destroy");
            return Ok(());
        }
        tracing::info!(testbed = %record.name, uid = caller.uid, "destroying domain");
        self.host
            .xl_destroy(&record.name)
            .await
            .map_err(EngineError::Command)?;
        if record.domain {
            record.domain = false;
            self.update(&record)?;
        }
        Ok(())
    }

    /// Remove the snapshot, destroying a domain still running on it first.
    pub async fn remove_snapshot(&self, caller: &Caller, snapshot: &str) -> EngineResult<()> {
        let (record, _guard) = self.lock(caller, "snapshot", snapshot).await?;
        tracing::info!(testbed = %record.name, uid = caller.uid, "removing snapshot");
        self.teardown_resources(&record)
            .await
            .map_err(EngineError::Command)?;
        self.table().remove(&record.name);
        Ok(())
    }

    /// Domain, then snapshot, then ledger entry; each step idempotent.
    /// `record.domain` is set in the ledger before any `xl restore`, so a
    /// record without it never had a domain.
    async fn teardown_resources(&self, record: &Record) -> Result<(), HostError> {
        if record.domain {
            self.host.xl_destroy(&record.name).await?;
        }
        self.host.dm_remove(&record.name).await?;
        self.ledger.remove(&record.name).map_err(|e| HostError {
            command: format!("removing {} from the ledger", record.name),
            reason: e.to_string(),
        })
    }

    /// Tear down every testbed created through `bus_name` (it disconnected).
    pub async fn teardown_owner(&self, bus_name: &str) {
        let names: Vec<String> = self
            .table()
            .values()
            .filter(|e| e.record.owner == bus_name)
            .map(|e| e.record.name.clone())
            .collect();
        for name in names {
            tracing::info!(testbed = %name, owner = bus_name, "owner disconnected; tearing down");
            self.teardown_by_name(&name, Some(bus_name)).await;
        }
    }

    /// Tear down every testbed (shutdown), after the calls in flight on
    /// each; from here on no testbed is created.
    pub async fn teardown_all(&self) {
        let names: Vec<String> = {
            let table = self.table();
            self.closing.store(true, Ordering::SeqCst);
            table.keys().cloned().collect()
        };
        // All at once (each testbed has its own lock): one stuck testbed
        // must not hold the others past systemd's stop timeout.
        futures_util::future::join_all(names.iter().map(|n| self.teardown_by_name(n, None))).await;
    }

    /// Tear down `name` once the call in flight on it is done; with
    /// `owner`, only if it still belongs to that connection (the slot may
    /// have been freed and taken by another caller meanwhile).
    async fn teardown_by_name(&self, name: &str, owner: Option<&str>) {
        let root = Caller {
            uid: 0,
            bus_name: String::new(),
        };
        let (record, _guard) = match self.lock(&root, "snapshot", name).await {
            Ok(locked) => locked,
            Err(_) => return, // already gone
        };
        if owner.is_some_and(|o| o != record.owner) {
            return;
        }
        let started = std::time::Instant::now();
        match self.teardown_resources(&record).await {
            Ok(()) => {
                self.table().remove(name);
                self.orphans().remove(name);
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(testbed = name, seconds, "torn down");
            }
            Err(e) => {
                // Its owner is gone (or the daemon is stopping): nobody
                // else will ask again, so retry_orphans will.
                self.orphans().insert(name.to_string());
                tracing::error!(testbed = name, error = %e, "teardown failed; the ledger keeps it, and it is retried")
            }
        }
    }

    fn orphans(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tries again to tear down every testbed whose owner went away and
    /// whose teardown failed; the daemon calls this every few seconds.
    /// Returns how many are still left.
    pub async fn retry_orphans(&self) -> usize {
        let names: Vec<String> = self.orphans().iter().cloned().collect();
        for name in names {
            if !self.table().contains_key(&name) {
                self.orphans().remove(&name);
                continue;
            }
            tracing::info!(testbed = %name, "retrying the teardown of a testbed whose owner left");
            self.teardown_by_name(&name, None).await;
        }
        self.orphans().len()
    }

    /// Read-only view: (name, image, state, address, owner uid).
    pub fn list(&self) -> Vec<(String, String, String, String, u32)> {
        self.table()
            .values()
            .map(|e| {
                let r = &e.record;
                let slot = &self.config.images[&r.image].slots[r.slot];
                let state = if r.domain { "running" } else { "snapshot" };
                (
                    r.name.clone(),
                    r.image.clone(),
                    state.into(),
                    slot.address.clone(),
                    r.uid,
                )
            })
            .collect()
    }

    /// At start-up: tear down every `adt-*` domain and snapshot the tools
    /// report and everything the ledger lists, whoever made it. Returns
    /// the names that could not be torn down.
    pub async fn reconcile(&self) -> Vec<String> {
        let mut names: Vec<String> = self.ledger.names().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the ledger");
            Vec::new()
        });
        // From the tools, only the names of configured slots: privd makes
        // no other, and an adt-* device or domain named otherwise (an
        // LVM volume in a group named adt, a domain started by hand) is
        // not its to remove. What it made under an image since removed
        // from the configuration is in the ledger.
        let ours: BTreeSet<String> = self
            .config
            .images
            .iter()
            .flat_map(|(image, c)| (0..c.slots.len()).map(move |i| resource_name(image, i)))
            .collect();
        for listed in [self.host.xl_list().await, self.host.dm_list().await] {
            match listed {
                Ok(found) => names.extend(found.into_iter().filter(|n| ours.contains(n))),
                Err(e) => tracing::error!(error = %e, "cannot list existing resources"),
            }
        }
        // Only names adt-privd could have made reach a tool, whatever the
        // ledger directory or the tools report.
        names.retain(|n| n.starts_with(RESOURCE_PREFIX) && is_valid_name(n));
        names.sort();
        names.dedup();
        let mut failed = Vec::new();
        for name in names {
            let uid = self.ledger.read(&name).map(|r| r.uid);
            tracing::info!(testbed = %name, ?uid, "reconciling: tearing down a leftover");
            // Each step is tried whatever the other did: a broken xl must
            // not keep a snapshot alive. The ledger entry goes only when
            // both are gone, so the next start tries again.
            let domain = self.host.xl_destroy(&name).await;
            let snapshot = self.host.dm_remove(&name).await;
            let result = domain.and(snapshot).and_then(|()| {
                self.ledger.remove(&name).map_err(|e| HostError {
                    command: format!("removing {name} from the ledger"),
                    reason: e.to_string(),
                })
            });
            if let Err(e) = result {
                tracing::error!(testbed = %name, error = %e, "cannot tear down a leftover");
                failed.push(name);
            }
        }
        failed
    }
}

fn rolled_back(e: EngineError) -> EngineError {
    match e {
        EngineError::Command(h) => EngineError::Command(HostError {
            command: h.command,
            reason: format!("{}; the testbed was rolled back", h.reason),
        }),
        other => other,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
