//! LTX encode, decode and compaction, each beside its baseline on the same pages: plain LZ4
//! block compression (lz4_flex) plus CRC-64 (crc's CRC_64_GO_ISO), the two costs an LTX file
//! cannot avoid. Throughput is in bytes of uncompressed pages. Issue 10's target: each within
//! 3x of its baseline.
//!
//!   cargo bench -p ltx --bench ltx
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ltx::{Compactor, Decoder, Encoder, Header, TxId, FLAG_NO_CHECKSUM};

const PAGE: usize = 4096;
const PAGES: u32 = 2048; // 8 MiB

static CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// Pages like a table of random 500-byte blobs: half random bytes, half SQLite-like structure
/// (zeros and small repeated headers), so that LZ4 has some, not much, to gain.
fn pages(n: u32, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let mut p = vec![0u8; PAGE];
            for (i, chunk) in p.chunks_mut(8).enumerate() {
                if (i / 32) % 2 == 0 {
                    chunk.copy_from_slice(&next().to_le_bytes());
                } else if i % 4 == 0 {
                    chunk.copy_from_slice(&(i as u64).to_be_bytes());
                }
            }
            p
        })
        .collect()
}

fn header(commit: u32, min: u64, max: u64) -> Header {
    let mut h = Header::new(PAGE as u32, commit, TxId(min), TxId(max), 1_700_000_000_000);
    h.flags = FLAG_NO_CHECKSUM;
    h
}

/// An LTX file of `pages` (pgno = index + 1 + offset).
fn encode(h: &Header, pages: &[(u32, &[u8])]) -> Vec<u8> {
    let mut e = Encoder::new(Vec::with_capacity(pages.len() * PAGE), h).expect("encoder");
    for (pgno, p) in pages {
        e.write_page(*pgno, p).expect("write_page");
    }
    e.finish(0).expect("finish").0
}

/// The baseline of encoding: LZ4-compress every page into one buffer and CRC-64 it.
fn baseline_encode(pages: &[Vec<u8>]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(pages.len() * PAGE);
    let mut d = CRC.digest();
    let mut buf = vec![0u8; lz4_flex::block::get_maximum_output_size(PAGE)];
    for p in pages {
        d.update(p);
        let n = lz4_flex::block::compress_into(p, &mut buf).expect("compress");
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&buf[..n]);
    }
    (out, d.finalize())
}

/// The baseline of decoding: decompress the baseline's blocks and CRC-64 the pages.
fn baseline_decode(blocks: &[u8]) -> u64 {
    let mut d = CRC.digest();
    let mut page = vec![0u8; PAGE];
    let mut at = 0;
    while at + 4 <= blocks.len() {
        let n = u32::from_be_bytes([blocks[at], blocks[at + 1], blocks[at + 2], blocks[at + 3]])
            as usize;
        at += 4;
        lz4_flex::block::decompress_into(&blocks[at..at + n], &mut page).expect("decompress");
        d.update(&page);
        at += n;
    }
    d.finalize()
}

fn decode(file: &[u8]) -> u64 {
    let mut d = Decoder::new(file).expect("decoder");
    let mut page = vec![0u8; PAGE];
    let mut n = 0;
    while let Some(pgno) = d.next_page(&mut page).expect("next_page") {
        n += pgno as u64;
    }
    d.finish().expect("finish");
    n
}

fn bench(c: &mut Criterion) {
    let data = pages(PAGES, 7);
    let bytes = (PAGES as u64) * PAGE as u64;
    let numbered: Vec<(u32, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u32 + 1, p.as_slice()))
        .collect();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("ltx", |b| {
        b.iter(|| black_box(encode(&header(PAGES, 1, 1), &numbered)))
    });
    g.bench_function("lz4+crc64 baseline", |b| {
        b.iter(|| black_box(baseline_encode(&data)))
    });
    g.finish();

    let file = encode(&header(PAGES, 1, 1), &numbered);
    let (blocks, _) = baseline_encode(&data);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("ltx", |b| b.iter(|| black_box(decode(&file))));
    g.bench_function("lz4+crc64 baseline", |b| {
        b.iter(|| black_box(baseline_decode(&blocks)))
    });
    g.finish();

    // Compaction: a snapshot of every page, then three files each rewriting a third of them,
    // merged into one. Throughput counts the input pages; the baseline does the same work with
    // plain LZ4 + CRC-64: decode every input page, encode every output page.
    let thirds: Vec<Vec<(u32, &[u8])>> = (0..3u32)
        .map(|k| {
            numbered
                .iter()
                .filter(|(pgno, _)| pgno % 3 == k)
                .copied()
                .collect()
        })
        .collect();
    let mut inputs = vec![encode(&header(PAGES, 1, 1), &numbered)];
    for (k, t) in thirds.iter().enumerate() {
        let mut h = header(PAGES, k as u64 + 2, k as u64 + 2);
        h.flags = FLAG_NO_CHECKSUM;
        inputs.push(encode(&h, t));
    }
    let in_pages = PAGES as u64 * 2;
    let mut base_inputs = vec![baseline_encode(&data).0];
    for t in &thirds {
        let v: Vec<Vec<u8>> = t.iter().map(|(_, p)| p.to_vec()).collect();
        base_inputs.push(baseline_encode(&v).0);
    }
    let mut g = c.benchmark_group("compact");
    g.throughput(Throughput::Bytes(in_pages * PAGE as u64));
    g.bench_function("ltx", |b| {
        b.iter(|| {
            let decs = inputs
                .iter()
                .map(|f| Decoder::new(f.as_slice()).expect("decoder"))
                .collect();
            let comp = Compactor::new(decs).expect("compactor");
            let h = comp.header().clone();
            black_box(
                comp.write_ltx(&h, Vec::with_capacity(file.len()))
                    .expect("write_ltx")
                    .0
                    .len(),
            )
        })
    });
    g.bench_function("lz4+crc64 baseline", |b| {
        b.iter(|| {
            let mut sum = 0;
            for f in &base_inputs {
                sum ^= baseline_decode(f);
            }
            black_box((sum, baseline_encode(&data).1))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
