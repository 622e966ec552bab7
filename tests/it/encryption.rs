//! Data at rest: no clear text in any file of the data directory, and a clear error for a
//! file opened with the wrong key.

use crate::support::{all_files, contains, Env};
use strongroom::audit::{Actor, NewEntry};
use strongroom::tenants::{self, TenantId};

const SENTENCE: &str = "The consignment of insulin for Ward 7 leaves dock 4 at 06:15.";
const NAME: &str = "Zebrafish Pharmaceutical Holdings";

#[test]
fn no_file_in_the_data_directory_holds_clear_text() {
    let env = Env::init();
    let id = env.create_tenant(NAME);
    let app = env.app();
    let tid = TenantId::parse(&id).unwrap();
    let store = tenants::open_store(&app, &tid).unwrap();
    for i in 0..200 {
        store
            .writer()
            .change(move |_tx| -> Result<_, strongroom::store::StoreError> {
                let e = NewEntry::new(Actor::system(), "record.note", &format!("note-{i}"))
                    .params(serde_json::json!({ "text": SENTENCE, "tenant": NAME }));
                Ok(((), e))
            })
            .wait()
            .unwrap();
    }
    let check = |when: &str| {
        let files = all_files(&env.dir);
        assert!(
            files
                .iter()
                .any(|f| f.to_string_lossy().ends_with(".db-wal"))
                || when == "closed"
        );
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for needle in [SENTENCE, NAME, "Zebrafish", "insulin"] {
                assert!(
                    !contains(&bytes, needle.as_bytes()),
                    "{when}: {} contains {needle:?} in clear",
                    f.display()
                );
            }
            assert!(
                !contains(&bytes, b"SQLite format 3"),
                "{} is not encrypted",
                f.display()
            );
        }
    };
    // While open, the WAL holds the newest pages: they must be encrypted too.
    check("open");
    drop(store);
    app.close();
    check("closed");

    // And the sentence really is in there, for whoever holds the key.
    let out = env.ok(&["audit", "export", "--tenant", &id]);
    assert!(out.contains(SENTENCE));
}

#[test]
fn a_tenant_file_under_the_wrong_key_gets_a_clear_error() {
    let env = Env::init();
    let a = env.create_tenant("Alpha");
    let b = env.create_tenant("Bravo");
    // Put tenant A's file where tenant B's belongs: B's key cannot open it.
    let dir = env.dir.join("tenants");
    std::fs::copy(dir.join(format!("{a}.db")), dir.join(format!("{b}.db"))).unwrap();
    let text = env.fails(&["audit", "verify", "--tenant", &b]);
    assert!(
        text.contains(&format!("cannot decrypt tenant {b} with key version 1")),
        "{text}"
    );
    let app = env.app();
    let err = tenants::open_store(&app, &TenantId::parse(&b).unwrap())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!("cannot decrypt tenant {b} with key version 1: wrong key, or not a Strongroom file of this installation")
    );
    // Tenant A is untouched by B's trouble.
    assert!(tenants::open_store(&app, &TenantId::parse(&a).unwrap()).is_ok());
    app.close();
}

#[test]
fn a_missing_tenant_file_is_named() {
    let env = Env::init();
    let id = env.create_tenant("Vanishing");
    std::fs::remove_file(env.dir.join(format!("tenants/{id}.db"))).unwrap();
    let text = env.fails(&["audit", "verify"]);
    assert!(
        text.contains(&format!("tenant {id}")) && text.contains("does not exist"),
        "{text}"
    );
}

#[test]
fn tenant_files_open_lazily_and_close_when_idle_or_over_the_bound() {
    let env = Env::init();
    let ids: Vec<TenantId> = (0..4)
        .map(|i| TenantId::parse(&env.create_tenant(&format!("Lazy {i}"))).unwrap())
        .collect();
    let mut cfg = strongroom::config::Config::default();
    cfg.store.max_open_tenants = 2;
    cfg.store.tenant_idle_secs = 0;
    let app = strongroom::app::App::open(&cfg, &env.dir).unwrap();
    assert_eq!(
        app.tenant_stores().open_count(),
        0,
        "nothing opens before it is used"
    );
    for id in &ids {
        let store = tenants::open_store(&app, id).unwrap();
        store
            .writer()
            .change(|_tx| -> Result<_, strongroom::store::StoreError> {
                Ok(((), NewEntry::new(Actor::system(), "record.touch", "x")))
            })
            .wait()
            .unwrap();
        assert!(app.tenant_stores().open_count() <= 2, "bound exceeded");
    }
    assert_eq!(app.tenant_stores().open_count(), 2);
    assert_eq!(app.tenant_stores().tracked_count(), 4);
    assert_eq!(app.tenant_stores().close_idle(), 2);
    assert_eq!(app.tenant_stores().open_count(), 0);
    assert_eq!(
        app.tenant_stores().tracked_count(),
        0,
        "closed tenants are forgotten, so the table does not grow with every tenant ever used"
    );
    // A forgotten tenant opens again on its next use.
    let store = tenants::open_store(&app, &ids[0]).unwrap();
    assert_eq!(app.tenant_stores().tracked_count(), 1);
    drop(store);
    // Closing signed every tail: each tenant's journal verifies with nothing unsigned.
    app.close();
    let out = env.ok(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    for f in v["files"].as_array().unwrap().iter().skip(1) {
        assert_eq!(f["chain"]["entries"], 2);
        assert_eq!(f["chain"]["unsigned_tail"], 0);
    }
}
