//! WAL scanning beside its baseline on the same file: reading the WAL and computing SQLite's
//! cumulative frame checksum over it (the least any scan that verifies frames must do).
//! Throughput is in WAL bytes; the file is in the page cache. Issue 10's target: within 3x.
//!
//!   cargo bench -p walstream --bench wal
use std::hint::black_box;
use std::io::Read;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walstream::sqlite::wal_reader::{read_header, scan, wal_checksum};

/// A WAL of about 16 MiB from real SQLite: transactions of 10 inserts of 500 random bytes and 5
/// updates, as in the sustained-load scenario. Copied aside before the connection closes.
fn make_wal(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("bench.db");
    let c = rusqlite::Connection::open(&db).expect("open");
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=OFF;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .expect("setup");
    let wal = dir.join("bench.db-wal");
    while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) < 16 << 20 {
        let tx = c.unchecked_transaction().expect("begin");
        for _ in 0..10 {
            tx.execute("INSERT INTO t(v) VALUES (randomblob(500))", [])
                .expect("insert");
        }
        for _ in 0..5 {
            tx.execute(
                "UPDATE t SET v = randomblob(500) WHERE id = abs(random()) % (SELECT max(id) FROM t) + 1",
                [],
            )
            .expect("update");
        }
        tx.commit().expect("commit");
    }
    let copy = dir.join("copy.db-wal");
    std::fs::copy(&wal, &copy).expect("copy wal");
    drop(c);
    copy
}

/// The baseline: read the whole file and run SQLite's checksum over each frame, chained.
fn baseline(path: &Path, page_size: usize) -> (u32, u32) {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .expect("open")
        .read_to_end(&mut buf)
        .expect("read");
    let big = buf[3] == 0x83;
    let mut sum = wal_checksum(big, (0, 0), &buf[..24]);
    let frame = 24 + page_size;
    let mut at = 32;
    while at + frame <= buf.len() {
        sum = wal_checksum(big, sum, &buf[at..at + 8]);
        sum = wal_checksum(big, sum, &buf[at + 24..at + frame]);
        at += frame;
    }
    sum
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = make_wal(dir.path());
    let len = std::fs::metadata(&wal).expect("stat").len();
    let file = std::fs::File::open(&wal).expect("open");
    let header = read_header(&file, &wal)
        .expect("header")
        .expect("non-empty WAL");
    let probe = scan(&file, &wal, &header, 32, None, None).expect("scan");
    assert!(
        probe.commits > 100 && probe.end > len / 2,
        "scan took {} commits to {}",
        probe.commits,
        probe.end
    );

    let mut g = c.benchmark_group("wal scan");
    g.throughput(Throughput::Bytes(len));
    g.bench_function("walstream scan", |b| {
        b.iter(|| {
            // Open and read the header each time, as a sync does.
            let f = std::fs::File::open(&wal).expect("open");
            let h = read_header(&f, &wal).expect("header").expect("header");
            black_box(
                scan(&f, &wal, &h, 32, None, None)
                    .expect("scan")
                    .pages
                    .len(),
            )
        })
    });
    g.bench_function("read + SQLite checksum baseline", |b| {
        b.iter(|| black_box(baseline(&wal, header.page_size as usize)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
