//! LocalStore against the ObjectStore contract (S3Store is only exercised, not run through
//! these checks, in functions/tiler/tests/e2e_lambda.rs against moto: put, list, get, sha256).

use std::sync::Arc;

use sphinx_core::store::{LocalStore, Metadata, ObjectStore, StoreError};

#[tokio::test]
async fn local_store_follows_the_object_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("root")).unwrap());

    assert!(store.get("work/a/x.bin").await.unwrap_err().is_not_found());
    assert!(store.head("work/a/x.bin").await.unwrap_err().is_not_found());

    store.put("work/a/x.bin", b"one".to_vec()).await.unwrap();
    store.put("work/a/x.bin", b"two!".to_vec()).await.unwrap();
    assert_eq!(store.get("work/a/x.bin").await.unwrap(), b"two!");
    let info = store.head("work/a/x.bin").await.unwrap();
    assert_eq!((info.size, info.metadata.len()), (4, 0));
    assert_eq!(
        store.sha256("work/a/x.bin").await.unwrap(),
        sphinx_core::keys::doc_id(b"two!")
    );
    assert!(store
        .sha256("work/a/none")
        .await
        .unwrap_err()
        .is_not_found());

    let mut meta = Metadata::new();
    meta.insert("sphinx-tasks".into(), "ocr,caption".into());
    store
        .put_with_metadata("inbox/my scan.pdf", b"%PDF".to_vec(), &meta)
        .await
        .unwrap();
    assert_eq!(
        store.head("inbox/my scan.pdf").await.unwrap().metadata,
        meta
    );

    assert!(store
        .put_if_absent("work/a/manifest.json", b"first".to_vec())
        .await
        .unwrap());
    assert!(!store
        .put_if_absent("work/a/manifest.json", b"second".to_vec())
        .await
        .unwrap());
    assert_eq!(store.get("work/a/manifest.json").await.unwrap(), b"first");

    store.put("work/ab/y.bin", b"y".to_vec()).await.unwrap();
    assert_eq!(
        store.list("work/a/").await.unwrap(),
        vec!["work/a/manifest.json", "work/a/x.bin"]
    );
    assert_eq!(
        store.list("work/a").await.unwrap(),
        vec!["work/a/manifest.json", "work/a/x.bin", "work/ab/y.bin"]
    );
    assert_eq!(
        store.list("").await.unwrap().len(),
        4,
        "metadata files are not objects"
    );
    assert!(store.list("nothing/here").await.unwrap().is_empty());

    store.delete("work/a/x.bin").await.unwrap();
    store.delete("work/a/x.bin").await.unwrap();
    assert!(store.get("work/a/x.bin").await.unwrap_err().is_not_found());
    store.delete("inbox/my scan.pdf").await.unwrap();
    assert!(store
        .head("inbox/my scan.pdf")
        .await
        .unwrap_err()
        .is_not_found());

    let err = store.put("../escape", b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidKey { .. }) && !err.is_transient(),
        "{err}"
    );
    assert!(!dir.path().join("escape").exists());
}

#[test]
fn local_keys_are_files_under_the_root_and_writes_leave_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    store
        .put_blocking("work/d/page-0000.bundle", b"bundle")
        .unwrap();
    let path = dir.path().join("work/d/page-0000.bundle");
    assert_eq!(store.path_of("work/d/page-0000.bundle").unwrap(), path);
    assert_eq!(std::fs::read(&path).unwrap(), b"bundle");
    assert!(store
        .put_if_absent_blocking("work/d/page-0000.bundle", b"other")
        .is_ok_and(|created| !created));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("work/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["page-0000.bundle"]);
    assert!(matches!(
        store.put_blocking("work/.sphinx-meta/x", b"x"),
        Err(StoreError::InvalidKey { .. })
    ));
}

#[test]
fn racing_conditional_writers_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let winners: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let store = &store;
                s.spawn(move || {
                    store
                        .put_if_absent_blocking("work/d/manifest.json", &[i; 4096])
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1);
    let body = store.get_blocking("work/d/manifest.json").unwrap();
    assert_eq!(body.len(), 4096);
    let winner = winners.iter().position(|w| *w).unwrap() as u8;
    assert!(
        body.iter().all(|b| *b == winner),
        "the winner's bytes, complete"
    );
}
