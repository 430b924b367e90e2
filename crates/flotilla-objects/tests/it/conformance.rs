use flotilla_objects::{ObjectKey, PART_BYTES};
use futures::TryStreamExt;

use crate::harness::{Harness, chunked, failing_after, random_bytes, sha256_hex};

const MIB: usize = 1024 * 1024;

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

async fn put_bytes(h: &Harness, k: &str, data: &[u8]) {
    h.objects
        .put_stream(&key(k), chunked(data.to_vec(), 4096), None)
        .await
        .unwrap();
}

pub(crate) async fn round_trip_20_mib_streamed(h: &Harness) {
    let data = random_bytes(20 * MIB, 1);
    let expected_sha = sha256_hex(&data);
    let k = ObjectKey::upload("asset-1", "movie.mp4");

    // Odd chunk size, so parts never line up with chunks.
    let info = h
        .objects
        .put_stream(&k, chunked(data.clone(), 100_003), Some(21 * MIB as u64))
        .await
        .unwrap();
    assert_eq!(info.key, "uploads/asset-1/movie.mp4");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.sha256.as_deref(), Some(expected_sha.as_str()));

    let head = h.objects.head(&k).await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert!(head.e_tag.is_some());

    let target = h.scratch.path().join("nested/dir/movie.mp4");
    let downloaded = h.objects.get_to_file(&k, &target).await.unwrap();
    assert_eq!(downloaded.sha256.as_deref(), Some(expected_sha.as_str()));
    assert_eq!(sha256_hex(&std::fs::read(&target).unwrap()), expected_sha);

    let (info, stream) = h.objects.get_stream(&k).await.unwrap();
    assert_eq!(info.size, data.len() as u64);
    let chunks: Vec<_> = stream.try_collect().await.unwrap();
    assert_eq!(sha256_hex(&chunks.concat()), expected_sha);

    // put_file streams a file back in under another key.
    let copy = ObjectKey::processed("asset-1", "copy.mp4");
    let info = h.objects.put_file(&copy, &target).await.unwrap();
    assert_eq!(info.sha256.as_deref(), Some(expected_sha.as_str()));
    assert_eq!(h.objects.head(&copy).await.unwrap().size, data.len() as u64);
    assert!(
        h.leftovers().await.iter().all(|f| !f.contains('#')),
        "staging files left"
    );
}

pub(crate) async fn small_and_empty_bodies_round_trip(h: &Harness) {
    for (name, data) in [
        ("small.txt", b"hello objects".to_vec()),
        ("empty.txt", Vec::new()),
    ] {
        let k = ObjectKey::upload("a", name);
        let info = h
            .objects
            .put_stream(&k, chunked(data.clone(), 5), Some(100))
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(info.sha256.unwrap(), sha256_hex(&data));
        let target = h.scratch.path().join(name);
        h.objects.get_to_file(&k, &target).await.unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), data);
    }
}

async fn assert_nothing_stored(h: &Harness, k: &ObjectKey) {
    assert_eq!(h.objects.head(k).await.unwrap_err().code(), "not_found");
    assert!(h.objects.list(&key("uploads")).await.unwrap().is_empty());
    assert_eq!(h.leftovers().await, Vec::<String>::new());
}

pub(crate) async fn too_large_mid_stream_leaves_no_object(h: &Harness) {
    // Past the first part, so the multipart upload has started and must be aborted.
    let limit = (PART_BYTES + 3 * MIB) as u64;
    let k = ObjectKey::upload("a", "big.bin");
    let err = h
        .objects
        .put_stream(
            &k,
            chunked(random_bytes(PART_BYTES * 2 + MIB, 2), 64 * 1024),
            Some(limit),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
    assert_nothing_stored(h, &k).await;
}

pub(crate) async fn too_large_within_first_part_leaves_no_object(h: &Harness) {
    let k = ObjectKey::upload("a", "small-but-too-big.bin");
    let err = h
        .objects
        .put_stream(&k, chunked(random_bytes(1000, 3), 64), Some(999))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "too_large");
    assert_nothing_stored(h, &k).await;
}

pub(crate) async fn body_error_mid_stream_leaves_no_object(h: &Harness) {
    let k = ObjectKey::upload("a", "cut.bin");
    let err = h
        .objects
        .put_stream(&k, failing_after(PART_BYTES + MIB), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "io");
    assert!(err.to_string().contains("client went away"), "{err}");
    assert_nothing_stored(h, &k).await;
}

pub(crate) async fn missing_objects_are_not_found(h: &Harness) {
    let k = key("uploads/nope/missing.bin");
    let target = h.scratch.path().join("missing.bin");
    let errors = [
        h.objects.head(&k).await.unwrap_err(),
        h.objects.get_stream(&k).await.map(|_| ()).unwrap_err(),
        h.objects.get_to_file(&k, &target).await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code(), "not_found", "{err}");
        assert!(!err.is_retryable());
    }
    assert!(!target.exists());
    assert!(
        h.objects
            .list(&key("uploads/nope"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn list_by_prefix_matches_whole_segments(h: &Harness) {
    put_bytes(h, "uploads/a/1.jpg", b"one").await;
    put_bytes(h, "uploads/a/sub/2.jpg", b"two!").await;
    put_bytes(h, "uploads/ab/3.jpg", b"three").await;
    put_bytes(h, "processed/a/x.webp", b"x").await;

    let listed = h.objects.list(&key("uploads/a")).await.unwrap();
    let summary: Vec<_> = listed.iter().map(|o| (o.key.as_str(), o.size)).collect();
    assert_eq!(
        summary,
        [("uploads/a/1.jpg", 3), ("uploads/a/sub/2.jpg", 4)]
    );
    assert_eq!(h.objects.list(&key("uploads")).await.unwrap().len(), 3);
    assert_eq!(h.objects.list(&key("processed")).await.unwrap().len(), 1);
    assert!(h.objects.list(&key("resources")).await.unwrap().is_empty());
}

pub(crate) async fn delete_removes_and_is_idempotent(h: &Harness) {
    put_bytes(h, "processed/a/thumb.webp", b"thumb").await;
    put_bytes(h, "processed/a/keep.webp", b"keep").await;
    let k = key("processed/a/thumb.webp");
    h.objects.delete(&k).await.unwrap();
    assert_eq!(h.objects.head(&k).await.unwrap_err().code(), "not_found");
    h.objects.delete(&k).await.unwrap();
    let left: Vec<_> = h
        .objects
        .list(&key("processed"))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["processed/a/keep.webp"]);
}

pub(crate) async fn overwrite_replaces_content(h: &Harness) {
    put_bytes(h, "resources/logo.png", b"old logo").await;
    put_bytes(h, "resources/logo.png", b"new").await;
    let target = h.scratch.path().join("logo.png");
    let info = h
        .objects
        .get_to_file(&key("resources/logo.png"), &target)
        .await
        .unwrap();
    assert_eq!(info.size, 3);
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
}

pub(crate) async fn path_escape_keys_are_refused(h: &Harness) {
    for bad in [
        "../x",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\b",
        "uploads/..",
        "",
        "a/b/",
    ] {
        let err = ObjectKey::parse(bad).unwrap_err();
        assert_eq!(err.code(), "invalid_key", "{bad:?}");
    }
    assert_eq!(
        ObjectKey::resource("../../etc/passwd").unwrap_err().code(),
        "invalid_key"
    );
    // Nothing reached the store, and nothing was written next to it.
    assert!(h.leftovers().await.is_empty());
    if let Some(root) = h.local_root() {
        let siblings: Vec<_> = std::fs::read_dir(root.parent().unwrap())
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(siblings.len(), 1, "only the store directory");
    }
}

pub(crate) async fn sanitised_upload_names_stay_in_the_asset_folder(h: &Harness) {
    let k = ObjectKey::upload("asset-9", "../../etc/passwd");
    h.objects
        .put_stream(&k, chunked(b"root:x:0:0".to_vec(), 3), None)
        .await
        .unwrap();
    let listed = h.objects.list(&key("uploads/asset-9")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].key.starts_with("uploads/asset-9/"),
        "{}",
        listed[0].key
    );
    assert!(!listed[0].key[("uploads/asset-9/".len())..].contains('/'));
    if let Some(root) = h.local_root() {
        assert!(root.join(&listed[0].key).is_file());
        let outside = h
            .leftovers()
            .await
            .into_iter()
            .filter(|f| !f.starts_with(&*root.to_string_lossy()));
        assert_eq!(outside.count(), 0);
    }
}

pub(crate) async fn unusual_but_valid_keys_round_trip(h: &Harness) {
    for k in [
        "resources/a b/ü%20.txt",
        "resources/x+y=z&w.txt",
        "resources/日本.png",
    ] {
        put_bytes(h, k, k.as_bytes()).await;
        let listed = h
            .objects
            .list(&key(k.rsplit_once('/').unwrap().0))
            .await
            .unwrap();
        assert!(listed.iter().any(|o| o.key == k), "{k} not in {listed:?}");
        let (_, stream) = h.objects.get_stream(&key(k)).await.unwrap();
        let body: Vec<_> = stream.try_collect().await.unwrap();
        assert_eq!(body.concat(), k.as_bytes());
    }
}
