//! Engine rules against an in-memory host: ownership, limits, rollback,
//! idempotent teardown, reconciliation.

use super::*;
use crate::host::HostResult;
use adt_privd::config::Config;
use std::collections::BTreeSet;
use std::path::Path;

/// An in-memory host: what exists, what was called, what should fail.
#[derive(Default)]
struct Sim {
    dm: Mutex<BTreeSet<String>>,
    xl: Mutex<BTreeSet<String>>,
    calls: Mutex<Vec<String>>,
    fail_restore: Mutex<bool>,
    fail_xl: Mutex<bool>,
    fail_dm_create: Mutex<bool>,
    /// `dmsetup remove` fails (a busy device) while set.
    fail_dm_remove: Mutex<bool>,
    /// When set, `xl restore` waits for a permit: a call held in flight.
    restore_gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// `xl destroy` of this domain waits for a permit of the gate.
    destroy_gate: Mutex<Option<(String, Arc<tokio::sync::Semaphore>)>>,
    /// The engine's ledger directory: each creating call records whether
    /// the ledger already held the testbed, and in which state.
    ledger_dir: Mutex<Option<std::path::PathBuf>>,
}

impl Sim {
    /// What the ledger says of `name` at this moment.
    fn ledger_state(&self, name: &str) -> String {
        let Some(dir) = self.ledger_dir.lock().unwrap().clone() else {
            return "no ledger".into();
        };
        match std::fs::read(dir.join(format!("{name}.json"))) {
            Err(_) => "absent".into(),
            Ok(b) => {
                let r: Record = serde_json::from_slice(&b).unwrap();
                format!("domain={}", r.domain)
            }
        }
    }

    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    fn fail(command: &str) -> HostError {
        HostError {
            command: command.into(),
            reason: "injected failure".into(),
        }
    }
}

impl Host for Arc<Sim> {
    async fn sectors(&self, _device: &Path) -> HostResult<u64> {
        Ok(2048)
    }
    async fn dm_create(&self, name: &str, table: &str) -> HostResult<()> {
        self.log(format!(
            "ledger before dm create: {}",
            self.ledger_state(name)
        ));
        self.log(format!("dm create {name} {table}"));
        if *self.fail_dm_create.lock().unwrap() {
            return Err(Sim::fail("dmsetup create"));
        }
        if !self.dm.lock().unwrap().insert(name.into()) {
            return Err(Sim::fail("dmsetup create (exists)"));
        }
        Ok(())
    }
    async fn dm_remove(&self, name: &str) -> HostResult<()> {
        self.log(format!("dm remove {name}"));
        if *self.fail_dm_remove.lock().unwrap() {
            return Err(Sim::fail("dmsetup remove (busy)"));
        }
        self.dm.lock().unwrap().remove(name);
        Ok(())
    }
    async fn dm_exists(&self, name: &str) -> HostResult<bool> {
        Ok(self.dm.lock().unwrap().contains(name))
    }
    async fn dm_list(&self) -> HostResult<Vec<String>> {
        Ok(self.dm.lock().unwrap().iter().cloned().collect())
    }
    async fn xl_restore(&self, config: &Path, _checkpoint: &Path) -> HostResult<()> {
        let name = config.file_stem().unwrap().to_string_lossy().into_owned();
        self.log(format!(
            "ledger before xl restore: {}",
            self.ledger_state(&name)
        ));
        self.log(format!("xl restore {}", config.display()));
        let gate = self.restore_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        if *self.fail_restore.lock().unwrap() {
            return Err(Sim::fail("xl restore"));
        }
        // The configs in these tests are named after the domain.
        let name = config.file_stem().unwrap().to_string_lossy().into_owned();
        if !self.xl.lock().unwrap().insert(name) {
            return Err(Sim::fail("xl restore (exists)"));
        }
        Ok(())
    }
    async fn xl_destroy(&self, name: &str) -> HostResult<()> {
        self.log(format!("xl destroy {name}"));
        let gate = self.destroy_gate.lock().unwrap().clone();
        if let Some((held, gate)) = gate {
            if held == name {
                gate.acquire().await.unwrap().forget();
            }
        }
        if *self.fail_xl.lock().unwrap() {
            return Err(Sim::fail("xl destroy"));
        }
        self.xl.lock().unwrap().remove(name);
        Ok(())
    }
    async fn xl_list(&self) -> HostResult<Vec<String>> {
        if *self.fail_xl.lock().unwrap() {
            return Err(Sim::fail("xl list"));
        }
        Ok(self.xl.lock().unwrap().iter().cloned().collect())
    }
}

fn config(ledger: &Path, slots: usize, max_per_uid: usize) -> Config {
    let mut text = format!(
        "ledger_dir = \"{}\"\n[limits]\nmax_per_uid = {max_per_uid}\n[images.img]\norigin = \"/dev/vg/origin\"\n",
        ledger.display()
    );
    for s in 0..slots {
        text += &format!(
            "[[images.img.slots]]\ncow = \"/dev/vg/cow{s}\"\ncheckpoint = \"/ck/{s}\"\n\
             domain_config = \"/cfg/adt-img-{s}.cfg\"\naddress = \"10.0.0.{s}\"\n"
        );
    }
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    sim: Arc<Sim>,
    engine: Arc<Engine<Arc<Sim>>>,
}

fn fixture(slots: usize, max_per_uid: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("ledger"), slots, max_per_uid);
    let ledger = Ledger::open(&config.ledger_dir).unwrap();
    let sim = Arc::new(Sim::default());
    *sim.ledger_dir.lock().unwrap() = Some(config.ledger_dir.clone());
    let engine = Arc::new(Engine::new(sim.clone(), config, ledger));
    Fixture {
        _dir: dir,
        sim,
        engine,
    }
}

fn alice() -> Caller {
    Caller {
        uid: 1001,
        bus_name: ":1.10".into(),
    }
}
fn bob() -> Caller {
    Caller {
        uid: 1002,
        bus_name: ":1.11".into(),
    }
}

#[tokio::test]
async fn full_cycle_creates_and_removes_everything() {
    let f = fixture(2, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    assert_eq!(snap, "adt-img-0");
    assert_eq!(
        f.sim.calls.lock().unwrap()[..2],
        [
            "ledger before dm create: domain=false",
            "dm create adt-img-0 0 2048 snapshot /dev/vg/origin /dev/vg/cow0 n 8"
        ]
    );
    let (domain, address) = f.engine.resume_domain(&alice(), &snap).await.unwrap();
    assert_eq!(
        (domain.as_str(), address.as_str()),
        ("adt-img-0", "10.0.0.0")
    );
    assert_eq!(f.engine.list()[0].2, "running");
    f.engine.destroy_domain(&alice(), &domain).await.unwrap();
    f.engine.remove_snapshot(&alice(), &snap).await.unwrap();
    assert!(f.sim.dm.lock().unwrap().is_empty());
    assert!(f.sim.xl.lock().unwrap().is_empty());
    assert!(f.engine.list().is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
}

#[tokio::test]
async fn the_ledger_holds_a_snapshot_while_it_exists() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    let record = f.engine.ledger.read(&snap).unwrap();
    assert_eq!(
        (record.uid, record.owner.as_str(), record.domain),
        (1001, ":1.10", false)
    );
    f.engine.resume_domain(&alice(), &snap).await.unwrap();
    assert!(f.engine.ledger.read(&snap).unwrap().domain);
    // Each resource is in the ledger before the command that makes it
    // runs: a crash during the command leaves it to reconcile.
    let calls = f.sim.calls.lock().unwrap().clone();
    let before = |cmd: &str| {
        let i = calls.iter().position(|c| c.starts_with(cmd)).unwrap();
        calls[i - 1].clone()
    };
    assert_eq!(before("dm create"), "ledger before dm create: domain=false");
    assert_eq!(
        before("xl restore"),
        "ledger before xl restore: domain=true"
    );
}

#[tokio::test]
async fn another_uid_cannot_touch_a_testbed() {
    let f = fixture(2, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    let calls = f.sim.calls.lock().unwrap().len();
    for result in [
        f.engine.resume_domain(&bob(), &snap).await.map(drop),
        f.engine.destroy_domain(&bob(), &snap).await,
        f.engine.remove_snapshot(&bob(), &snap).await,
    ] {
        assert!(matches!(
            result,
            Err(EngineError::NotOwner {
                owner: 1001,
                caller: 1002,
                ..
            })
        ));
    }
    assert_eq!(
        f.sim.calls.lock().unwrap().len(),
        calls,
        "no tool may run for bob"
    );
    // Root may clean up anybody's testbed.
    let root = Caller {
        uid: 0,
        bus_name: ":1.1".into(),
    };
    f.engine.remove_snapshot(&root, &snap).await.unwrap();
}

#[tokio::test]
async fn bad_names_run_no_tool() {
    let f = fixture(1, 4);
    let long = "a".repeat(4096);
    for name in ["../etc", "a/b", "a b", "..", "", long.as_str(), "UPPER"] {
        let e = f.engine.create_snapshot(&alice(), name).await.unwrap_err();
        assert!(matches!(e, EngineError::Malformed { .. }), "{name:?}: {e}");
        let e = f.engine.remove_snapshot(&alice(), name).await.unwrap_err();
        assert!(matches!(e, EngineError::Malformed { .. }), "{name:?}: {e}");
    }
    let e = f
        .engine
        .create_snapshot(&alice(), "nosuchimage")
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::UnknownImage(_)), "{e}");
    let e = f
        .engine
        .resume_domain(&alice(), "adt-img-0")
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::UnknownTestbed(_)), "{e}");
    assert!(f.sim.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn all_slots_busy_is_no_free_slot() {
    let f = fixture(2, 4);
    f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.engine.create_snapshot(&bob(), "img").await.unwrap();
    let e = f.engine.create_snapshot(&alice(), "img").await.unwrap_err();
    assert!(matches!(e, EngineError::NoFreeSlot { slots: 2, .. }), "{e}");
}

#[tokio::test]
async fn the_per_uid_limit_holds_and_root_is_exempt() {
    let f = fixture(3, 1);
    f.engine.create_snapshot(&alice(), "img").await.unwrap();
    let e = f.engine.create_snapshot(&alice(), "img").await.unwrap_err();
    assert!(
        matches!(e, EngineError::LimitExceeded { uid: 1001, held: 1 }),
        "{e}"
    );
    let root = Caller {
        uid: 0,
        bus_name: ":1.1".into(),
    };
    f.engine.create_snapshot(&root, "img").await.unwrap();
    f.engine.create_snapshot(&root, "img").await.unwrap();
}

#[tokio::test]
async fn a_failed_restore_leaves_nothing_behind() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    *f.sim.fail_restore.lock().unwrap() = true;
    let e = f.engine.resume_domain(&alice(), &snap).await.unwrap_err();
    assert!(e.to_string().contains("rolled back"), "{e}");
    assert!(f.sim.dm.lock().unwrap().is_empty());
    assert!(f.engine.list().is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
    // The slot is free again.
    *f.sim.fail_restore.lock().unwrap() = false;
    assert_eq!(
        f.engine.create_snapshot(&alice(), "img").await.unwrap(),
        "adt-img-0"
    );
}

#[tokio::test]
async fn a_second_resume_is_refused() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.engine.resume_domain(&alice(), &snap).await.unwrap();
    let e = f.engine.resume_domain(&alice(), &snap).await.unwrap_err();
    assert!(matches!(e, EngineError::BadState { .. }), "{e}");
}

#[tokio::test]
async fn teardown_is_idempotent() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.engine.resume_domain(&alice(), &snap).await.unwrap();
    f.engine.destroy_domain(&alice(), &snap).await.unwrap();
    f.engine.destroy_domain(&alice(), &snap).await.unwrap();
    // Removing the snapshot with a domain on it destroys the domain first.
    f.engine.resume_domain(&alice(), &snap).await.unwrap();
    f.engine.remove_snapshot(&alice(), &snap).await.unwrap();
    assert!(f.sim.xl.lock().unwrap().is_empty());
    let e = f.engine.remove_snapshot(&alice(), &snap).await.unwrap_err();
    assert!(matches!(e, EngineError::UnknownTestbed(_)));
}

#[tokio::test]
async fn a_disconnected_owner_loses_only_its_own_testbeds() {
    let f = fixture(3, 4);
    let a = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.engine.resume_domain(&alice(), &a).await.unwrap();
    let b = f.engine.create_snapshot(&bob(), "img").await.unwrap();
    f.engine.teardown_owner(":1.10").await;
    let left: Vec<_> = f.engine.list().into_iter().map(|t| t.0).collect();
    assert_eq!(left, vec![b.clone()]);
    assert_eq!(
        f.sim.dm.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
        vec![b]
    );
    assert!(f.sim.xl.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_teardown_after_the_owner_left_is_retried() {
    let f = fixture(2, 4);
    let a = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    *f.sim.fail_dm_remove.lock().unwrap() = true;
    f.engine.teardown_owner(":1.10").await;
    // The device was busy: the testbed stays, held by nobody.
    assert_eq!(f.engine.list().len(), 1);
    assert_eq!(f.engine.retry_orphans().await, 1, "still busy");
    *f.sim.fail_dm_remove.lock().unwrap() = false;
    assert_eq!(f.engine.retry_orphans().await, 0);
    assert!(f.engine.list().is_empty());
    assert!(!f.sim.dm.lock().unwrap().contains(&a));
    assert!(f.engine.ledger.names().unwrap().is_empty());
    // The slot and the uid's quota are free again.
    assert_eq!(f.engine.create_snapshot(&alice(), "img").await.unwrap(), a);
}

#[tokio::test]
async fn shutdown_tears_testbeds_down_side_by_side() {
    let f = fixture(2, 4);
    let a = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.engine.resume_domain(&alice(), &a).await.unwrap();
    let b = f.engine.create_snapshot(&bob(), "img").await.unwrap();
    f.engine.resume_domain(&bob(), &b).await.unwrap();
    // a's xl destroy hangs; b must go meanwhile.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *f.sim.destroy_gate.lock().unwrap() = Some((a.clone(), gate.clone()));
    let engine = f.engine.clone();
    let all = tokio::spawn(async move { engine.teardown_all().await });
    let mut b_gone = false;
    for _ in 0..1000 {
        if !f.engine.list().iter().any(|t| t.0 == b) {
            b_gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(b_gone, "b waited for a's stuck teardown");
    assert!(f.engine.list().iter().any(|t| t.0 == a));
    gate.add_permits(1);
    all.await.unwrap();
    assert!(f.engine.list().is_empty());
}

#[tokio::test]
async fn reconcile_tears_down_leftovers_from_tools_and_ledger() {
    let f = fixture(2, 4);
    f.sim.dm.lock().unwrap().extend([
        "adt-img-0".to_string(),
        "other-dev".to_string(),
        // not a configured slot's name: an LVM snapshot in a volume
        // group named adt, say
        "adt-snap".to_string(),
    ]);
    f.sim.xl.lock().unwrap().insert("adt-img-0".into());
    f.sim.xl.lock().unwrap().insert("adt-by-hand".into());
    f.engine
        .ledger
        .write(&Record {
            name: "adt-gone-1".into(),
            image: "gone".into(),
            slot: 1,
            uid: 5,
            owner: ":1.5".into(),
            created: 0,
            domain: false,
        })
        .unwrap();
    assert!(f.engine.reconcile().await.is_empty());
    assert_eq!(
        f.sim.dm.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
        vec!["adt-snap", "other-dev"]
    );
    assert_eq!(
        f.sim.xl.lock().unwrap().iter().cloned().collect::<Vec<_>>(),
        vec!["adt-by-hand"]
    );
    assert!(f.engine.ledger.names().unwrap().is_empty());
}

type Resume = tokio::task::JoinHandle<EngineResult<(String, String)>>;

/// Starts alice's ResumeDomain of `snap` and holds it inside `xl restore`
/// until a permit is added to the returned gate.
async fn resume_held_in_xl(f: &Fixture, snap: &str) -> (Arc<tokio::sync::Semaphore>, Resume) {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *f.sim.restore_gate.lock().unwrap() = Some(gate.clone());
    let engine = f.engine.clone();
    let s = snap.to_string();
    let resume = tokio::spawn(async move { engine.resume_domain(&alice(), &s).await });
    for _ in 0..1000 {
        let reached = f
            .sim
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("xl restore"));
        if reached {
            return (gate, resume);
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("timed out waiting for the resume to reach xl");
}

#[tokio::test]
async fn a_call_waiting_on_a_testbed_never_acts_on_its_slots_next_owner() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    let (gate, resume) = resume_held_in_xl(&f, &snap).await;
    // Alice's second call queues behind the resume on the same testbed.
    // It is polled only when awaited here, so the test decides when it
    // gets its turn.
    let alice = alice();
    let mut late_remove = Box::pin(f.engine.remove_snapshot(&alice, &snap));
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), &mut late_remove);
    assert!(
        waiting.await.is_err(),
        "the remove must wait for the resume"
    );
    // The resume fails and rolls back: the slot is free...
    *f.sim.fail_restore.lock().unwrap() = true;
    gate.add_permits(1);
    assert!(resume.await.unwrap().is_err());
    assert!(f.engine.list().is_empty());
    // ...and is taken again, by bob, under the same name, before alice's
    // queued call gets its turn.
    *f.sim.restore_gate.lock().unwrap() = None;
    let bobs = f.engine.create_snapshot(&bob(), "img").await.unwrap();
    assert_eq!(bobs, snap);
    let late = late_remove.await;
    assert!(
        matches!(late, Err(EngineError::UnknownTestbed(_))),
        "alice's stale call must not act on bob's testbed: {late:?}"
    );
    assert_eq!(f.engine.list()[0].4, 1002, "bob's testbed survives");
    assert!(f.sim.dm.lock().unwrap().contains(&snap));
}

#[tokio::test]
async fn shutdown_waits_for_calls_in_flight_and_refuses_new_testbeds() {
    let f = fixture(2, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    let (gate, resume) = resume_held_in_xl(&f, &snap).await;
    let engine = f.engine.clone();
    let shutdown = tokio::spawn(async move { engine.teardown_all().await });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(!shutdown.is_finished(), "teardown must wait for the resume");
    let e = f.engine.create_snapshot(&bob(), "img").await.unwrap_err();
    assert!(matches!(e, EngineError::ShuttingDown), "{e}");
    gate.add_permits(1);
    resume.await.unwrap().unwrap();
    shutdown.await.unwrap();
    // The domain the resume made is gone with its snapshot.
    assert!(f.sim.xl.lock().unwrap().is_empty());
    assert!(f.sim.dm.lock().unwrap().is_empty());
    assert!(f.engine.list().is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
}

#[tokio::test]
async fn reconcile_removes_snapshots_even_when_xl_fails_and_keeps_the_ledger() {
    let f = fixture(2, 4);
    f.sim.dm.lock().unwrap().insert("adt-img-0".into());
    f.engine
        .ledger
        .write(&Record {
            name: "adt-img-0".into(),
            image: "img".into(),
            slot: 0,
            uid: 5,
            owner: ":1.5".into(),
            created: 0,
            domain: true,
        })
        .unwrap();
    *f.sim.fail_xl.lock().unwrap() = true;
    assert_eq!(f.engine.reconcile().await, vec!["adt-img-0".to_string()]);
    assert!(
        f.sim.dm.lock().unwrap().is_empty(),
        "the snapshot goes even though xl failed"
    );
    assert_eq!(
        f.engine.ledger.names().unwrap(),
        vec!["adt-img-0".to_string()],
        "the ledger keeps it for the next start"
    );
    // Once xl works again, the next start finishes the job.
    *f.sim.fail_xl.lock().unwrap() = false;
    assert!(f.engine.reconcile().await.is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
}

#[tokio::test]
async fn a_huge_malformed_name_is_echoed_only_in_part() {
    let f = fixture(1, 4);
    let huge = "\x01".repeat(8 << 20);
    for e in [
        f.engine.create_snapshot(&alice(), &huge).await.unwrap_err(),
        f.engine.remove_snapshot(&alice(), &huge).await.unwrap_err(),
    ] {
        assert!(matches!(e, EngineError::Malformed { .. }), "{e}");
        let text = e.to_string();
        assert!(text.len() < 600, "{} bytes: {}", text.len(), &text[..600]);
        assert!(text.contains("8388608 bytes in all"), "{text}");
    }
    assert_eq!(excerpt("ab\n"), "\"ab\\n\"");
    // Cut on a character boundary.
    let text = excerpt(&"é".repeat(100));
    assert!(
        text.starts_with(&format!("\"{}\"...", "é".repeat(32))),
        "{text}"
    );
}

#[tokio::test]
async fn a_foreign_dm_device_is_refused_and_left_alone() {
    let f = fixture(1, 4);
    f.sim.dm.lock().unwrap().insert("adt-img-0".into());
    let e = f.engine.create_snapshot(&alice(), "img").await.unwrap_err();
    assert!(
        matches!(&e, EngineError::BadState { name, .. } if name == "adt-img-0"),
        "{e}"
    );
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(f.sim.dm.lock().unwrap().contains("adt-img-0"));
    let calls = f.sim.calls.lock().unwrap().clone();
    assert!(!calls.iter().any(|c| c.starts_with("dm ")), "{calls:?}");
    assert!(f.engine.list().is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_dm_create_removes_only_its_own_device() {
    let f = fixture(1, 4);
    *f.sim.fail_dm_create.lock().unwrap() = true;
    let e = f.engine.create_snapshot(&alice(), "img").await.unwrap_err();
    assert!(matches!(e, EngineError::Command(_)), "{e}");
    // The name was checked free before dmsetup create ran, so whatever
    // dmsetup may have left under it is adt-privd's own: it is removed.
    let calls = f.sim.calls.lock().unwrap().clone();
    assert!(
        calls.iter().any(|c| c.starts_with("dm remove adt-img-0")),
        "{calls:?}"
    );
    assert!(f.engine.list().is_empty());
    assert!(f.engine.ledger.names().unwrap().is_empty());
    *f.sim.fail_dm_create.lock().unwrap() = false;
    assert_eq!(
        f.engine.create_snapshot(&alice(), "img").await.unwrap(),
        "adt-img-0"
    );
}

#[tokio::test]
async fn destroying_a_domain_never_resumed_runs_no_tool() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    // A domain of that name that adt-privd did not start.
    f.sim.xl.lock().unwrap().insert(snap.clone());
    f.engine.destroy_domain(&alice(), &snap).await.unwrap();
    assert!(f.sim.xl.lock().unwrap().contains(&snap));
    let calls = f.sim.calls.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|c| c.starts_with("xl destroy")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_foreign_domain_is_refused_at_resume_and_left_alone() {
    let f = fixture(1, 4);
    let snap = f.engine.create_snapshot(&alice(), "img").await.unwrap();
    f.sim.xl.lock().unwrap().insert(snap.clone());
    let e = f.engine.resume_domain(&alice(), &snap).await.unwrap_err();
    assert!(
        matches!(&e, EngineError::BadState { name, .. } if *name == snap),
        "{e}"
    );
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(f.sim.xl.lock().unwrap().contains(&snap));
    let calls = f.sim.calls.lock().unwrap().clone();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("xl ") || c.starts_with("dm remove")),
        "{calls:?}"
    );
    // The snapshot is untouched and still the caller's.
    assert!(f.sim.dm.lock().unwrap().contains(&snap));
    assert!(!f.engine.ledger.read(&snap).unwrap().domain);
    assert_eq!(f.engine.list()[0].2, "snapshot");
}
