//! `WorkspaceBucket` against a real S3 server (s3s-fs, in-process on loopback, SigV4 checked).

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;
use sandbox_core::workspace_path::WorkspacePath;
use sandbox_e2e::s3::{self as server, BUCKET, SECRET_KEY, TestS3};
use sandbox_storage::{ByteStream, S3Settings, StorageError, WorkspaceBucket};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

fn p(raw: &str) -> WorkspacePath {
    WorkspacePath::parse_non_root(raw).expect("valid path")
}

/// `data` as a stream of chunks of at most `chunk` bytes.
fn stream_of(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(chunk.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(stream::iter(chunks))
}

async fn read_all(bucket: &WorkspaceBucket, session: &str, path: &str) -> Vec<u8> {
    let (size, content) = bucket.read(session, &p(path)).await.expect("read");
    let chunks: Vec<Bytes> = content.try_collect().await.expect("read stream");
    let data = chunks.concat();
    assert_eq!(size, data.len() as u64, "announced size of {path}");
    data
}

/// A direct object_store client on the same server, to look at what `WorkspaceBucket` made.
fn raw_store(s3: &TestS3) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(server::ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .expect("raw client")
}

/// The ETag of `key`: S3 gives multipart objects `"<md5>-<parts>"`.
async fn etag(s3: &TestS3, key: &str) -> String {
    let meta = raw_store(s3).head(&object_store::path::Path::from(key)).await.expect("head");
    meta.e_tag.expect("etag")
}

/// Deterministic pseudo-random bytes in varied chunk sizes, hashed as they are produced.
fn generated(total: usize, hash: Arc<Mutex<Sha256>>) -> ByteStream {
    const SIZES: [usize; 5] = [MIB, 123_457, 3 * MIB + 1, 64 * 1024 - 1, 7];
    let state = (0x9E37_79B9_7F4A_7C15u64, 0usize, 0usize);
    Box::pin(stream::unfold(state, move |(mut x, produced, turn)| {
        let hash = Arc::clone(&hash);
        async move {
            if produced == total {
                return None;
            }
            let len = SIZES[turn % SIZES.len()].min(total - produced);
            let mut chunk = Vec::with_capacity(len + 8);
            while chunk.len() < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.extend_from_slice(&x.to_le_bytes());
            }
            chunk.truncate(len);
            hash.lock().expect("hash").update(&chunk);
            Some((Ok(Bytes::from(chunk)), (x, produced + len, turn + 1)))
        }
    }))
}

async fn connect(s3: &TestS3) -> WorkspaceBucket {
    WorkspaceBucket::connect(s3.settings()).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_round_trip_and_list_with_sizes_and_times() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    assert!(bucket.list("sess_a").await.expect("list").is_empty());

    let files: [(&str, Vec<u8>); 5] = [
        ("b.txt", b"hello\n".to_vec()),
        ("a/deep/nested.bin", (0..=255u8).cycle().take(70_000).collect()),
        ("empty", Vec::new()),
        ("odd name %25 #1 ü.txt", b"odd".to_vec()),
        ("a/z", b"z".to_vec()),
    ];
    let before = chrono::Utc::now() - chrono::Duration::seconds(2);
    for (path, data) in &files {
        let written = bucket.write("sess_a", &p(path), stream_of(data, 1000)).await.expect("write");
        assert_eq!(written, data.len() as u64, "{path}");
    }
    let after = chrono::Utc::now() + chrono::Duration::seconds(2);

    let listed = bucket.list("sess_a").await.expect("list");
    let names: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["a/deep/nested.bin", "a/z", "b.txt", "empty", "odd name %25 #1 ü.txt"]);
    for file in &listed {
        let (_, data) = files.iter().find(|(path, _)| *path == file.path.as_str()).expect("known");
        assert_eq!(file.size, data.len() as u64, "{}", file.path);
        assert!(file.modified_at >= before && file.modified_at <= after, "{:?}", file.modified_at);
    }
    for (path, data) in &files {
        assert_eq!(&read_all(&bucket, "sess_a", path).await, data, "{path}");
    }

    // Overwriting replaces the content; a single-part file is one plain PUT.
    bucket.write("sess_a", &p("b.txt"), stream_of(b"second version", 3)).await.expect("overwrite");
    assert_eq!(read_all(&bucket, "sess_a", "b.txt").await, b"second version");
    assert!(!etag(&s3, "sessions/sess_a/b.txt").await.contains('-'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_stream_round_trips_through_multipart() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    let total = 64 * MIB;
    let sent = Arc::new(Mutex::new(Sha256::new()));
    let written =
        bucket.write("big", &p("data/blob.bin"), generated(total, Arc::clone(&sent))).await.expect("write");
    assert_eq!(written, total as u64);
    let sent = sent.lock().expect("hash").clone().finalize();

    // 64 MiB in 8 MiB parts: a completed multipart upload of exactly 8 parts.
    let tag = etag(&s3, "sessions/big/data/blob.bin").await;
    assert!(tag.trim_matches('"').ends_with("-8"), "etag {tag}");
    assert!(s3.pending_uploads().is_empty(), "{:?}", s3.pending_uploads());

    let (size, content) = bucket.read("big", &p("data/blob.bin")).await.expect("read");
    assert_eq!(size, total as u64);
    let mut received = Sha256::new();
    let mut count = 0usize;
    let mut content = content;
    while let Some(chunk) = content.next().await {
        let chunk = chunk.expect("chunk");
        count += chunk.len();
        received.update(&chunk);
    }
    assert_eq!(count, total);
    assert_eq!(received.finalize(), sent, "content differs");

    let listed = bucket.list("big").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_part_is_a_single_put_and_one_byte_more_is_multipart() {
    let s3 = TestS3::start().await;
    let settings = S3Settings { multipart_part_size_mb: 5, ..s3.settings() };
    let bucket = WorkspaceBucket::connect(settings).await.expect("connect");
    let part = vec![7u8; 5 * MIB];
    bucket.write("s", &p("one"), stream_of(&part, MIB)).await.expect("write");
    let mut more = part.clone();
    more.push(8);
    bucket.write("s", &p("two"), stream_of(&more, 999_999)).await.expect("write");
    assert!(!etag(&s3, "sessions/s/one").await.contains('-'));
    assert!(etag(&s3, "sessions/s/two").await.trim_matches('"').ends_with("-2"));
    assert_eq!(read_all(&bucket, "s", "one").await, part);
    assert_eq!(read_all(&bucket, "s", "two").await, more);
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A chunk whose bytes count as live until every `Bytes` sharing it is dropped.
struct Tracked(Vec<u8>);

impl AsRef<[u8]> for Tracked {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        LIVE.fetch_sub(self.0.len(), Ordering::SeqCst);
    }
}

fn tracked_chunk(len: usize, fill: u8) -> Bytes {
    let now = LIVE.fetch_add(len, Ordering::SeqCst) + len;
    PEAK.fetch_max(now, Ordering::SeqCst);
    Bytes::from_owner(Tracked(vec![fill; len]))
}

/// The process's peak resident set size so far, in bytes.
fn vm_hwm() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kb: usize = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("number");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_256_mib_holds_about_two_parts() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    let part = 8 * MIB;
    // Warm up connections and allocator before measuring.
    bucket.write("mem", &p("warmup"), stream_of(&vec![1u8; part + 1], MIB)).await.expect("warmup");
    let hwm_before = vm_hwm();

    let total = 256 * MIB;
    let chunks = stream::iter(0..total / MIB).map(|i| Ok(tracked_chunk(MIB, i as u8)));
    let written = bucket.write("mem", &p("huge"), Box::pin(chunks)).await.expect("write");
    assert_eq!(written, total as u64);
    let growth = vm_hwm().saturating_sub(hwm_before);
    let peak = PEAK.load(Ordering::SeqCst);
    eprintln!("input held at once: {} MiB; peak RSS growth: {} MiB", peak / MIB, growth / MIB);

    // The input chunks the upload held at once: one part filling, one in flight, one chunk.
    assert!(peak >= part, "tracking saw only {peak} bytes live");
    assert!(peak <= 2 * part + MIB, "{peak} bytes of input held at once (part {part})");
    assert_eq!(LIVE.load(Ordering::SeqCst), 0, "input chunks still held after the write");
    // And the whole process (client and in-process server) grew far less than the file.
    assert!(growth < total / 4, "peak RSS grew by {} MiB for a {} MiB upload", growth / MIB, total / MIB);

    let listed = bucket.list("mem").await.expect("list");
    let huge = listed.iter().find(|f| f.path.as_str() == "huge").expect("listed");
    assert_eq!(huge.size, total as u64);
    assert!(etag(&s3, "sessions/mem/huge").await.trim_matches('"').ends_with("-32"));
}

/// `good` bytes in 1 MiB chunks, then an error.
fn failing_after(good: usize) -> ByteStream {
    let chunks = (0..good / MIB).map(|_| Ok(Bytes::from(vec![5u8; MIB])));
    let fail = std::iter::once(Err(std::io::Error::other("executor connection reset")));
    Box::pin(stream::iter(chunks.chain(fail)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_input_stream_leaves_no_object() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;

    // Half-way through a multipart upload (three parts sent).
    let err = bucket.write("s", &p("big"), failing_after(30 * MIB)).await.expect_err("must fail");
    assert_eq!(err.code(), "input_failed", "{err}");
    assert!(err.to_string().contains("executor connection reset"), "{err}");
    let missing = bucket.read("s", &p("big")).await.err().expect("no object");
    assert!(matches!(missing, StorageError::NotFound { .. }), "{missing}");
    assert!(bucket.list("s").await.expect("list").is_empty());
    assert!(s3.pending_uploads().is_empty(), "upload not aborted: {:?}", s3.pending_uploads());

    // Within the first part: nothing was sent at all.
    let err = bucket.write("s", &p("small"), failing_after(MIB)).await.expect_err("must fail");
    assert_eq!(err.code(), "input_failed");
    assert!(bucket.list("s").await.expect("list").is_empty());

    // A file that existed keeps its previous content.
    bucket.write("s", &p("kept"), stream_of(b"old content", 4)).await.expect("write");
    bucket.write("s", &p("kept"), failing_after(20 * MIB)).await.expect_err("must fail");
    assert_eq!(read_all(&bucket, "s", "kept").await, b"old content");
    assert!(s3.pending_uploads().is_empty(), "{:?}", s3.pending_uploads());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_of_different_files_all_land() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    let content = |i: usize| -> Vec<u8> { format!("file {i} ").repeat(i * 997 + 1).into_bytes() };
    let writes = (0..24).map(|i| {
        let bucket = bucket.clone();
        tokio::spawn(async move {
            let data = content(i);
            bucket.write("conc", &p(&format!("dir{}/f{i}", i % 3)), stream_of(&data, 4096)).await
        })
    });
    for (i, result) in futures_util::future::join_all(writes).await.into_iter().enumerate() {
        assert_eq!(result.expect("task").expect("write"), content(i).len() as u64);
    }
    let listed = bucket.list("conc").await.expect("list");
    assert_eq!(listed.len(), 24);
    for i in 0..24 {
        let path = format!("dir{}/f{i}", i % 3);
        assert_eq!(read_all(&bucket, "conc", &path).await, content(i), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_one_file_and_missing_files_are_not_found() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    bucket.write("s", &p("a"), stream_of(b"a", 1)).await.expect("write");
    bucket.write("s", &p("b"), stream_of(b"b", 1)).await.expect("write");

    bucket.delete("s", &p("a")).await.expect("delete");
    let names: Vec<String> =
        bucket.list("s").await.expect("list").into_iter().map(|f| f.path.into()).collect();
    assert_eq!(names, ["b"]);
    // Deleting what is not there is fine.
    bucket.delete("s", &p("a")).await.expect("delete again");
    bucket.delete("nobody", &p("x/y")).await.expect("delete in empty session");

    match bucket.read("s", &p("a")).await {
        Err(StorageError::NotFound { session, path }) => {
            assert_eq!((session.as_str(), path.as_str()), ("s", "a"))
        }
        Err(other) => panic!("expected NotFound, got {other}"),
        Ok(_) => panic!("deleted file still readable"),
    }
    let err = bucket.read("s", &p("never/was")).await.err().expect("missing");
    assert_eq!(err.code(), "not_found");
}

async fn write_sessions(bucket: &WorkspaceBucket, sessions: &[&str]) {
    for session in sessions {
        for file in ["x", "sub/y"] {
            let data = format!("{session}:{file}");
            bucket.write(session, &p(file), stream_of(data.as_bytes(), 5)).await.expect("write");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_isolated_by_prefix_in_list_and_delete_session() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    write_sessions(&bucket, &["sess_1", "sess_10", "sess_1x"]).await;

    let listed = bucket.list("sess_1").await.expect("list");
    assert_eq!(listed.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["sub/y", "x"]);
    assert_eq!(read_all(&bucket, "sess_1", "x").await, b"sess_1:x");

    assert_eq!(bucket.delete_session("sess_1").await.expect("delete_session"), 2);
    assert!(bucket.list("sess_1").await.expect("list").is_empty());
    assert_eq!(bucket.list("sess_10").await.expect("list").len(), 2, "sess_10 touched");
    assert_eq!(bucket.list("sess_1x").await.expect("list").len(), 2, "sess_1x touched");
    assert_eq!(read_all(&bucket, "sess_10", "sub/y").await, b"sess_10:sub/y");
    assert_eq!(bucket.delete_session("sess_1").await.expect("again"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_session_copies_only_that_session() {
    let s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    write_sessions(&bucket, &["sess_1", "sess_10"]).await;
    bucket.write("sess_2", &p("own"), stream_of(b"mine", 2)).await.expect("write");

    assert_eq!(bucket.copy_session("sess_1", "sess_2").await.expect("copy"), 2);
    let names: Vec<String> =
        bucket.list("sess_2").await.expect("list").into_iter().map(|f| f.path.into()).collect();
    assert_eq!(names, ["own", "sub/y", "x"]);
    assert_eq!(read_all(&bucket, "sess_2", "sub/y").await, b"sess_1:sub/y");
    assert_eq!(read_all(&bucket, "sess_2", "x").await, b"sess_1:x");
    // The source is untouched and the copies are independent of it.
    bucket.delete_session("sess_1").await.expect("delete source");
    assert_eq!(read_all(&bucket, "sess_2", "x").await, b"sess_1:x");
    assert_eq!(bucket.list("sess_10").await.expect("list").len(), 2);

    assert_eq!(bucket.copy_session("empty", "sess_3").await.expect("copy nothing"), 0);
    let err = bucket.copy_session("sess_2", "sess_2").await.expect_err("onto itself");
    assert_eq!(err.code(), "invalid_argument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_session_ids_and_the_root_path_are_refused_before_any_request() {
    let mut s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    s3.stop().await; // Nothing below may need the server.
    for bad in ["", "../sessions", "a/b", "sess 1", &"x".repeat(65)] {
        assert_eq!(bucket.list(bad).await.expect_err("list").code(), "invalid_session", "{bad:?}");
        let err = bucket.write(bad, &p("f"), stream_of(b"x", 1)).await.expect_err("write");
        assert_eq!(err.code(), "invalid_session");
        assert_eq!(bucket.read(bad, &p("f")).await.err().expect("read").code(), "invalid_session");
        assert_eq!(bucket.delete(bad, &p("f")).await.expect_err("delete").code(), "invalid_session");
        assert_eq!(bucket.delete_session(bad).await.expect_err("delete_session").code(), "invalid_session");
        assert_eq!(bucket.copy_session("ok", bad).await.expect_err("copy").code(), "invalid_session");
        assert_eq!(bucket.copy_session(bad, "ok").await.expect_err("copy").code(), "invalid_session");
    }
    let root = WorkspacePath::root();
    assert_eq!(bucket.read("s", &root).await.err().expect("read root").code(), "invalid_path");
    assert_eq!(bucket.delete("s", &root).await.expect_err("delete root").code(), "invalid_path");
}

fn assert_names_server_not_secret(err: &StorageError, s3: &TestS3, bucket: &str) {
    let text = err.to_string();
    assert!(text.contains(&s3.endpoint()), "endpoint missing: {text}");
    assert!(text.contains(bucket), "bucket missing: {text}");
    assert!(!text.contains(SECRET_KEY) && !format!("{err:?}").contains(SECRET_KEY), "secret leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_unauthorized() {
    let s3 = TestS3::start().await;
    let wrong_secret = S3Settings { secret_access_key: "not-the-secret".into(), ..s3.settings() };
    let err = WorkspaceBucket::connect(wrong_secret).await.expect_err("wrong secret");
    eprintln!("{err}");
    assert!(matches!(err, StorageError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.code(), "storage_unauthorized");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    assert_names_server_not_secret(&err, &s3, BUCKET);

    let wrong_key = S3Settings { access_key_id: "nobody".into(), ..s3.settings() };
    let err = WorkspaceBucket::connect(wrong_key).await.expect_err("wrong key");
    eprintln!("{err}");
    assert_eq!(err.code(), "storage_unauthorized", "{err}");
    assert_names_server_not_secret(&err, &s3, BUCKET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_fails_quickly() {
    let settings = S3Settings {
        endpoint: Some("http://127.0.0.1:1".into()),
        access_key_id: "k".into(),
        secret_access_key: SECRET_KEY.into(),
        request_timeout_secs: 2,
        ..S3Settings::default()
    };
    let started = Instant::now();
    let err = WorkspaceBucket::connect(settings).await.expect_err("nothing listens on port 1");
    let elapsed = started.elapsed();
    eprintln!("{err} (after {elapsed:?})");
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let text = err.to_string();
    assert!(text.contains("http://127.0.0.1:1") && text.contains("sandbox-workspace"), "{text}");
    assert!(!text.contains(SECRET_KEY), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_reported_as_such() {
    let s3 = TestS3::start().await;
    let settings = S3Settings { bucket: "no-such-bucket".into(), ..s3.settings() };
    let err = WorkspaceBucket::connect(settings).await.expect_err("no bucket");
    eprintln!("{err}");
    assert!(matches!(err, StorageError::NoSuchBucket { .. }), "{err:?}");
    assert_eq!(err.code(), "storage_no_such_bucket");
    assert_names_server_not_secret(&err, &s3, "no-such-bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_fails_once_the_server_is_gone() {
    let mut s3 = TestS3::start().await;
    let bucket = connect(&s3).await;
    bucket.write("s", &p("f"), stream_of(b"data", 2)).await.expect("write");
    bucket.check().await.expect("check while up");
    s3.stop().await;

    let unreachable = |what: &str, err: StorageError| {
        assert!(matches!(err, StorageError::Unreachable { .. }), "{what}: {err:?}");
        assert_names_server_not_secret(&err, &s3, BUCKET);
    };
    unreachable("check", bucket.check().await.expect_err("check"));
    unreachable("list", bucket.list("s").await.expect_err("list"));
    unreachable("read", bucket.read("s", &p("f")).await.err().expect("read"));
    unreachable("write", bucket.write("s", &p("g"), stream_of(b"x", 1)).await.expect_err("write"));
    let big = vec![0u8; 9 * MIB];
    unreachable(
        "multipart write",
        bucket.write("s", &p("h"), stream_of(&big, MIB)).await.expect_err("write"),
    );
    unreachable("delete", bucket.delete("s", &p("f")).await.expect_err("delete"));
    unreachable("delete_session", bucket.delete_session("s").await.expect_err("delete_session"));
    unreachable("copy_session", bucket.copy_session("s", "t").await.expect_err("copy_session"));
}

/// GETs `url` (on `localhost:port`) over a plain HTTP/1.1 connection to 127.0.0.1.
async fn http_get(port: u16, url: &str) -> (u16, Vec<u8>) {
    use http_body_util::{BodyExt, Empty};
    let origin = format!("http://localhost:{port}");
    let path_and_query = url.strip_prefix(&origin).expect("url on the public endpoint");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::get(path_and_query)
        .header(http::header::HOST, format!("localhost:{port}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_downloads_use_the_public_endpoint() {
    let s3 = TestS3::start().await;
    let plain = connect(&s3).await;
    assert!(plain.presigned_download("s", &p("f"), Duration::from_secs(60)).is_none());

    let public = format!("http://localhost:{}", s3.port());
    let settings = S3Settings { public_endpoint: Some(public.clone()), ..s3.settings() };
    let bucket = WorkspaceBucket::connect(settings).await.expect("connect");
    let content = b"presigned content \x00\xff".to_vec();
    bucket.write("s", &p("dir/file name.txt"), stream_of(&content, 7)).await.expect("write");

    let url = bucket
        .presigned_download("s", &p("dir/file name.txt"), Duration::from_secs(300))
        .expect("configured")
        .expect("signed");
    assert!(url.starts_with(&format!("{public}/{BUCKET}/sessions/s/dir/")), "{url}");
    assert!(url.contains("X-Amz-Signature=") && !url.contains(SECRET_KEY), "{url}");
    let (status, body) = http_get(s3.port(), &url).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(body, content);

    // The signature is checked: a tampered URL is refused.
    let tampered = url.replace("X-Amz-Expires=300", "X-Amz-Expires=301");
    assert_ne!(tampered, url);
    let (status, _) = http_get(s3.port(), &tampered).await;
    assert_eq!(status, 403);

    let err = bucket.presigned_download("../x", &p("f"), Duration::from_secs(1)).expect("configured");
    assert_eq!(err.expect_err("bad session").code(), "invalid_session");
    for ttl in [Duration::ZERO, Duration::from_secs(7 * 24 * 3600 + 1)] {
        let err = bucket.presigned_download("s", &p("f"), ttl).expect("configured");
        assert_eq!(err.expect_err("bad ttl").code(), "invalid_argument", "{ttl:?}");
    }
}
