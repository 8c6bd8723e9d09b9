//! The ltx crate against replicas written by the real Litestream 0.5.17
//! (`testdata/litestream-0.5.17/<case>/`, see its README.md).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ltx::checksum::{db_checksum, DbChecksum};
use ltx::{
    page_index_tail_len, read_page_index, Compactor, Decoder, Encoder, Error, Header,
    PageIndexElem, Trailer, TxId, DEFAULT_TAIL_SIZE, HEADER_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
};
use sha2::{Digest, Sha256};

const CASES: [&str; 5] = [
    "basic-4k",
    "small-pages-512",
    "large-pages-64k",
    "shrink-vacuum",
    "app-truncate-checkpoint",
];

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/litestream-0.5.17")
        .join(case)
}

fn manifest(case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(case_dir(case).join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every LTX file of a case: (level, min, max, bytes), sorted by level then TXID.
fn files(case: &str) -> Vec<(u32, TxId, TxId, Vec<u8>)> {
    let ltx_dir = case_dir(case).join("replica/ltx");
    let mut out = Vec::new();
    for level in std::fs::read_dir(&ltx_dir).unwrap() {
        let level = level.unwrap();
        let lvl: u32 = level.file_name().to_str().unwrap().parse().unwrap();
        for f in std::fs::read_dir(level.path()).unwrap() {
            let f = f.unwrap();
            let (min, max) = ltx::parse_file_name(f.file_name().to_str().unwrap()).unwrap();
            out.push((lvl, min, max, std::fs::read(f.path()).unwrap()));
        }
    }
    out.sort_by_key(|(l, min, max, _)| (*l, *min, *max));
    assert!(!out.is_empty(), "no fixture files for {case}");
    out
}

fn file(case: &str, level: u32, min: u64, max: u64) -> Vec<u8> {
    let path = case_dir(case).join(format!(
        "replica/ltx/{level}/{}",
        ltx::file_name(TxId(min), TxId(max))
    ));
    std::fs::read(path).unwrap()
}

/// Decoded content of one file.
struct Decoded {
    header: Header,
    pages: Vec<(u32, Vec<u8>)>,
    trailer: Trailer,
}

fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    let mut dec = Decoder::new(bytes)?;
    let header = dec.header().clone();
    let mut pages = Vec::new();
    let mut buf = vec![0u8; header.page_size as usize];
    while let Some(pgno) = dec.next_page(&mut buf)? {
        pages.push((pgno, buf.clone()));
    }
    let trailer = dec.finish()?;
    Ok(Decoded {
        header,
        pages,
        trailer,
    })
}

/// Walks the frames independently of the decoder: (pgno, flags, offset, frame size).
fn walk_frames(bytes: &[u8]) -> Vec<(u32, u16, u64, u64)> {
    let mut out = Vec::new();
    let mut at = HEADER_SIZE;
    loop {
        let pgno = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        let flags = u16::from_be_bytes(bytes[at + 4..at + 6].try_into().unwrap());
        if pgno == 0 {
            return out;
        }
        assert_eq!(
            flags, PAGE_FLAG_SIZE,
            "Litestream 0.5.17 writes only size-prefixed block frames"
        );
        let size = u32::from_be_bytes(bytes[at + 6..at + 10].try_into().unwrap()) as usize;
        let len = PAGE_HEADER_SIZE + 4 + size;
        out.push((pgno, flags, at as u64, len as u64));
        at += len;
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Restores the database at the end of `chain` (contiguous files, oldest first) into a buffer.
fn restore(chain: &[&[u8]]) -> (Header, Vec<u8>) {
    let decoders = chain.iter().map(|b| Decoder::new(*b).unwrap()).collect();
    let mut c = Compactor::new(decoders).unwrap();
    let header = c.header().clone();
    let ps = header.page_size as usize;
    let mut db = vec![0u8; header.commit as usize * ps];
    let mut buf = vec![0u8; ps];
    while let Some(pgno) = c.next_page(&mut buf).unwrap() {
        let at = (pgno as usize - 1) * ps;
        db[at..at + ps].copy_from_slice(&buf);
    }
    c.finish().unwrap();
    (header, db)
}

#[test]
fn fixtures_every_file_decodes_and_checksum_verifies() {
    let mut n = 0;
    for case in CASES {
        let page_size = manifest(case)["page_size"].as_u64().unwrap() as u32;
        for (level, min, max, bytes) in files(case) {
            let d = decode(&bytes).unwrap_or_else(|e| panic!("{case} L{level} {min}-{max}: {e}"));
            assert_eq!(
                (d.header.min_txid, d.header.max_txid),
                (min, max),
                "{case} L{level}"
            );
            assert_eq!(d.header.page_size, page_size);
            assert!(d.header.no_checksum(), "Litestream sets NoChecksum");
            assert_eq!(d.header.pre_apply_checksum, 0);
            assert_eq!(d.trailer.post_apply_checksum, 0);
            let stored = u64::from_be_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
            assert_eq!(d.trailer.file_checksum, stored);
            n += 1;
        }
    }
    assert!(n >= 60, "only {n} fixture files");
}

#[test]
fn fixtures_page_index_from_tail_matches_frames() {
    for case in CASES {
        for (level, min, max, bytes) in files(case) {
            let tail = &bytes[bytes.len().saturating_sub(DEFAULT_TAIL_SIZE)..];
            let index = match read_page_index(tail) {
                Ok(index) => index,
                Err(Error::Truncated(_)) => {
                    let need = page_index_tail_len(tail).unwrap() as usize;
                    assert!(need > tail.len());
                    read_page_index(&bytes[bytes.len() - need..]).unwrap()
                }
                Err(e) => panic!("{case} L{level} {min}-{max}: {e}"),
            };
            let frames: Vec<PageIndexElem> = walk_frames(&bytes)
                .into_iter()
                .map(|(pgno, _, offset, size)| PageIndexElem { pgno, offset, size })
                .collect();
            assert_eq!(index, frames, "{case} L{level} {min}-{max}");
            let d = decode(&bytes).unwrap();
            let pgnos: Vec<u32> = d.pages.iter().map(|(p, _)| *p).collect();
            assert_eq!(pgnos, index.iter().map(|e| e.pgno).collect::<Vec<_>>());
        }
    }
}

/// Re-encoding a fixture's pages with its header. lz4_flex and Go's pierrec/lz4 are different
/// compressors, so byte identity is not expected (and the file checksum, which covers the
/// compressed-size prefix, then differs too); what must hold is that the re-encoded file
/// decodes to the same header, pages and post-apply checksum. Where the compressed sizes happen
/// to agree the file checksum must agree as well.
#[test]
fn fixtures_reencode_decodes_identically() {
    let (mut identical, mut total, mut same_sizes) = (0, 0, 0);
    let (mut theirs, mut ours, mut frames, mut same_frames) = (0usize, 0usize, 0usize, 0usize);
    for case in CASES {
        for (level, min, max, bytes) in files(case) {
            let d = decode(&bytes).unwrap();
            let mut enc = Encoder::new(Vec::new(), &d.header).unwrap();
            for (pgno, page) in &d.pages {
                enc.write_page(*pgno, page).unwrap();
            }
            let (out, trailer) = enc.finish(d.trailer.post_apply_checksum).unwrap();
            total += 1;
            if out == bytes {
                identical += 1;
                assert_eq!(trailer, d.trailer);
                continue;
            }
            let again = decode(&out).unwrap_or_else(|e| panic!("{case} L{level} {min}-{max}: {e}"));
            assert_eq!(again.header, d.header);
            assert_eq!(again.pages, d.pages, "{case} L{level} {min}-{max}");
            assert_eq!(
                again.trailer.post_apply_checksum,
                d.trailer.post_apply_checksum
            );
            let sizes = |b: &[u8]| walk_frames(b).into_iter().map(|f| f.3).collect::<Vec<_>>();
            theirs += bytes.len();
            ours += out.len();
            for (a, b) in walk_frames(&bytes).iter().zip(walk_frames(&out)) {
                frames += 1;
                let (ra, rb) = (
                    a.2 as usize..(a.2 + a.3) as usize,
                    b.2 as usize..(b.2 + b.3) as usize,
                );
                same_frames +=
                    usize::from(bytes[ra.start + 4..ra.end] == out[rb.start + 4..rb.end]);
            }
            if sizes(&out) == sizes(&bytes) {
                same_sizes += 1;
                assert_eq!(trailer.file_checksum, d.trailer.file_checksum);
            }
        }
    }
    eprintln!(
        "re-encoding: {identical} of {total} fixture files byte-identical, {same_sizes} with equal frame sizes; \
         {theirs} bytes from Litestream, {ours} from lz4_flex; {same_frames} of {frames} frames identical"
    );
}

/// The file checksum formula, computed from scratch over the raw bytes (not through the
/// decoder), matches the trailer of every fixture.
#[test]
fn fixtures_file_checksum_formula() {
    for case in CASES {
        for (level, min, max, bytes) in files(case) {
            let d = decode(&bytes).unwrap();
            let mut input = bytes[..HEADER_SIZE].to_vec();
            let frames = walk_frames(&bytes);
            for ((_, _, offset, _), (_, page)) in frames.iter().zip(&d.pages) {
                let at = *offset as usize;
                input.extend_from_slice(&bytes[at..at + PAGE_HEADER_SIZE + 4]);
                input.extend_from_slice(page);
            }
            let end = frames.last().map_or(HEADER_SIZE, |f| (f.2 + f.3) as usize);
            // Zero page header, index, index length and post-apply checksum: all raw bytes.
            input.extend_from_slice(&bytes[end..bytes.len() - 8]);
            let sum = (1u64 << 63) | ltx::checksum::CRC64.checksum(&input);
            assert_eq!(sum, d.trailer.file_checksum, "{case} L{level} {min}-{max}");
        }
    }
}

#[test]
fn fixtures_bit_flips_never_panic_and_never_change_pages_silently() {
    for (case, level, min, max, stride) in [
        ("basic-4k", 0, 1, 1, 1), // 575 bytes: every byte, every bit
        ("basic-4k", 0, 2, 2, 7), // 16 KiB
        ("small-pages-512", 1, 2, 4, 13),
        ("large-pages-64k", 0, 2, 2, 29),
    ] {
        let bytes = file(case, level, min, max);
        let original = decode(&bytes).unwrap();
        let mut offsets: Vec<usize> = (0..bytes.len()).step_by(stride).collect();
        offsets.extend(bytes.len().saturating_sub(64)..bytes.len()); // the whole tail
        offsets.extend(0..HEADER_SIZE + 16);
        let (mut errors, mut benign) = (0, 0);
        for &at in &offsets {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                match decode(&b) {
                    Err(_) => errors += 1,
                    Ok(d) => {
                        // Only a flip inside compressed data that decompresses to the same page
                        // can pass (e.g. another match offset into a run of zeros).
                        assert_eq!(
                            d.pages, original.pages,
                            "{case}: flip at {at} bit {bit} changed pages"
                        );
                        assert_eq!(d.header, original.header);
                        benign += 1;
                    }
                }
            }
        }
        assert!(errors > 0);
        eprintln!("{case} L{level} {min}-{max}: {errors} flips rejected, {benign} benign");
    }
}

#[test]
fn fixtures_truncations_error_never_panic() {
    for (case, level, min, max, stride) in [
        ("basic-4k", 0, 1, 1, 1),
        ("basic-4k", 9, 1, 9, 97),
        ("small-pages-512", 0, 3, 3, 5),
        ("large-pages-64k", 0, 1, 1, 101),
    ] {
        let bytes = file(case, level, min, max);
        for len in (0..bytes.len())
            .step_by(stride)
            .chain(bytes.len().saturating_sub(40)..bytes.len())
        {
            assert!(
                decode(&bytes[..len]).is_err(),
                "{case} L{level} {min}-{max}: truncated to {len} decoded"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err(), "trailing byte accepted");
    }
}

/// The known answer: for every TXID Litestream restored, restoring through the Compactor gives
/// the same bytes (sha256) and the manifest's database checksum. Two plans per TXID: the whole
/// L0 chain, and the newest L9 snapshot at or below the TXID followed by L0 files.
#[test]
fn fixtures_restore_every_txid_matches_litestream() {
    for case in CASES {
        let m = manifest(case);
        let all = files(case);
        let l0: BTreeMap<u64, &[u8]> = all
            .iter()
            .filter(|f| f.0 == 0)
            .map(|(_, min, max, b)| {
                assert_eq!(min, max, "L0 files hold one TXID");
                (min.0, b.as_slice())
            })
            .collect();
        let txids = m["txids"].as_object().unwrap();
        assert!(!txids.is_empty());
        for (hex_txid, want) in txids {
            let txid: TxId = hex_txid.parse().unwrap();
            assert!(
                want.get("error").is_none(),
                "{case} {txid}: Litestream could not restore it"
            );
            // All L0 files are present in the fixtures: the chain 1..=txid.
            assert_eq!(
                l0.range(1..=txid.0).count() as u64,
                txid.0,
                "{case}: L0 chain has gaps"
            );
            let chain: Vec<&[u8]> = l0.range(1..=txid.0).map(|(_, b)| *b).collect();
            let (header, db) = restore(&chain);
            assert_eq!(header.max_txid, txid);
            assert_eq!(
                db.len() as u64,
                want["size"].as_u64().unwrap(),
                "{case} {txid} size"
            );
            assert_eq!(
                sha256_hex(&db),
                want["sha256"].as_str().unwrap(),
                "{case} {txid} sha256"
            );
            let sum = db_checksum(header.page_size, &db);
            assert_eq!(
                format!("{:016x}", sum.value()),
                want["db_checksum"].as_str().unwrap(),
                "{case} {txid}"
            );

            // Snapshot plan.
            let snap = all
                .iter()
                .filter(|f| f.0 == 9 && f.2 <= txid)
                .max_by_key(|f| f.2);
            if let Some((_, _, smax, sbytes)) = snap {
                let mut chain: Vec<&[u8]> = vec![sbytes.as_slice()];
                chain.extend(l0.range(smax.0..=txid.0).skip(1).map(|(_, b)| *b));
                let (h2, db2) = restore(&chain);
                assert!(h2.is_snapshot());
                assert_eq!(
                    sha256_hex(&db2),
                    want["sha256"].as_str().unwrap(),
                    "{case} {txid} via L9 {smax}"
                );
            }
        }
        // `latest` is the newest TXID.
        let newest = l0.keys().max().unwrap();
        let (_, db) = restore(&l0.values().copied().collect::<Vec<_>>());
        assert_eq!(
            sha256_hex(&db),
            m["latest"]["sha256"].as_str().unwrap(),
            "{case} latest ({newest})"
        );
    }
}

/// A page checksum sum computed page by page equals the helper (guards `db_checksum`).
#[test]
fn fixtures_db_checksum_page_by_page() {
    let chain: Vec<Vec<u8>> = (1..=9).map(|t| file("basic-4k", 0, t, t)).collect();
    let refs: Vec<&[u8]> = chain.iter().map(|b| b.as_slice()).collect();
    let (h, db) = restore(&refs);
    let mut sum = DbChecksum::new();
    for (i, page) in db.chunks(h.page_size as usize).enumerate() {
        sum.add(ltx::checksum::page_checksum(i as u32 + 1, page));
    }
    assert_eq!(sum, db_checksum(h.page_size, &db));
}

/// Merging the L0 files a compacted file covers gives the same pages and commit as Litestream's
/// compacted file (L1, L2 and the L9 snapshots).
#[test]
fn fixtures_compactor_matches_litestream_compactions() {
    let mut compared = 0;
    for case in CASES {
        let all = files(case);
        let l0: BTreeMap<u64, &[u8]> = all
            .iter()
            .filter(|f| f.0 == 0)
            .map(|f| (f.1 .0, f.3.as_slice()))
            .collect();
        for (level, min, max, bytes) in all.iter().filter(|f| f.0 > 0) {
            let chain: Vec<&[u8]> = l0.range(min.0..=max.0).map(|(_, b)| *b).collect();
            let want = decode(bytes).unwrap();
            let decoders = chain.iter().map(|b| Decoder::new(*b).unwrap()).collect();
            let c = Compactor::new(decoders).unwrap();
            let header = Header {
                wal_offset: 0,
                wal_size: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                ..c.header().clone()
            };
            assert_eq!(
                header.commit, want.header.commit,
                "{case} L{level} {min}-{max}"
            );
            assert_eq!(header.min_txid, want.header.min_txid);
            assert_eq!(header.max_txid, want.header.max_txid);
            if *level < 9 {
                // Compactions keep the newest input's timestamp and zero WAL fields.
                assert_eq!(header, want.header, "{case} L{level} {min}-{max}");
            }
            let (out, _) = c.write_ltx(&header, Vec::new()).unwrap();
            let got = decode(&out).unwrap();
            assert_eq!(got.pages, want.pages, "{case} L{level} {min}-{max}");
            compared += 1;
        }
    }
    assert!(compared >= 30);
}

/// Compacting compacted files (L1 files into an L2 range) and a snapshot plus L1 files.
#[test]
fn fixtures_compactor_accepts_compacted_and_snapshot_inputs() {
    // basic-4k: L1 1-1, 2-2, 3-8 make L2 1-8.
    let inputs = [
        file("basic-4k", 1, 1, 1),
        file("basic-4k", 1, 2, 2),
        file("basic-4k", 1, 3, 8),
    ];
    let c = Compactor::new(
        inputs
            .iter()
            .map(|b| Decoder::new(b.as_slice()).unwrap())
            .collect(),
    )
    .unwrap();
    assert!(c.header().is_snapshot());
    let h = c.header().clone();
    let (out, _) = c.write_ltx(&h, Vec::new()).unwrap();
    assert_eq!(
        decode(&out).unwrap().pages,
        decode(&file("basic-4k", 2, 1, 8)).unwrap().pages
    );

    // Snapshot 1-8 then L1 9-9 give snapshot 1-9.
    let inputs = [file("basic-4k", 9, 1, 8), file("basic-4k", 1, 9, 9)];
    let c = Compactor::new(
        inputs
            .iter()
            .map(|b| Decoder::new(b.as_slice()).unwrap())
            .collect(),
    )
    .unwrap();
    let h = c.header().clone();
    let (out, _) = c.write_ltx(&h, Vec::new()).unwrap();
    assert_eq!(
        decode(&out).unwrap().pages,
        decode(&file("basic-4k", 9, 1, 9)).unwrap().pages
    );

    // Non-contiguous inputs are refused.
    let inputs = [file("basic-4k", 0, 1, 1), file("basic-4k", 0, 3, 3)];
    let r = Compactor::new(
        inputs
            .iter()
            .map(|b| Decoder::new(b.as_slice()).unwrap())
            .collect(),
    );
    assert!(matches!(r, Err(Error::Compaction(_))));
    // Mismatched page sizes are refused.
    let inputs = [file("basic-4k", 0, 1, 1), file("small-pages-512", 0, 2, 2)];
    let r = Compactor::new(
        inputs
            .iter()
            .map(|b| Decoder::new(b.as_slice()).unwrap())
            .collect(),
    );
    assert!(matches!(r, Err(Error::Compaction(_))));
}

/// Overlapping inputs: a snapshot taken in the middle of an L1 interval (1-5) then the L1 file
/// that straddles it (3-8) give the same pages as compacting every L0 file. A file the previous
/// one already covers (4-4 after 3-8) is refused.
#[test]
fn fixtures_compactor_accepts_overlapping_inputs() {
    let merge = |inputs: &[Vec<u8>]| {
        let c = Compactor::new(
            inputs
                .iter()
                .map(|b| Decoder::new(b.as_slice()).unwrap())
                .collect(),
        )
        .unwrap();
        let h = c.header().clone();
        c.write_ltx(&h, Vec::new()).unwrap().0
    };
    let l0: Vec<Vec<u8>> = (1..=9).map(|t| file("basic-4k", 0, t, t)).collect();
    let snapshot_1_5 = merge(&l0[..5]);
    let out = merge(&[
        snapshot_1_5,
        file("basic-4k", 1, 3, 8),
        file("basic-4k", 0, 9, 9),
    ]);
    let d = decode(&out).unwrap();
    assert_eq!((d.header.min_txid.0, d.header.max_txid.0), (1, 9));
    assert_eq!(d.pages, decode(&merge(&l0)).unwrap().pages);

    let inputs = [file("basic-4k", 1, 3, 8), file("basic-4k", 0, 4, 4)];
    let r = Compactor::new(
        inputs
            .iter()
            .map(|b| Decoder::new(b.as_slice()).unwrap())
            .collect(),
    );
    assert!(matches!(r, Err(Error::Compaction(_))));
}

/// A corrupt input makes the compactor fail, not produce a database.
#[test]
fn fixtures_compactor_corrupt_input_fails() {
    let a = file("basic-4k", 0, 1, 1);
    let mut b = file("basic-4k", 0, 2, 2);
    let at = b.len() - 12;
    b[at] ^= 0x40; // inside the file checksum
    let c = Compactor::new(vec![
        Decoder::new(a.as_slice()).unwrap(),
        Decoder::new(b.as_slice()).unwrap(),
    ])
    .unwrap();
    let h = c.header().clone();
    assert!(matches!(
        c.write_ltx(&h, Vec::new()),
        Err(Error::ChecksumMismatch { .. })
    ));
}

/// Rewrites a case's L0 chain the way a checksum-tracking writer would (NoChecksum clear,
/// pre-apply = previous post-apply, post-apply = database checksum after the file; the first
/// file is a snapshot with pre-apply 0). Returns the files and each file's post-apply checksum.
fn with_real_checksums(case: &str) -> Vec<(Vec<u8>, u64)> {
    let mut db: Vec<u8> = Vec::new();
    let mut prev = 0u64;
    let mut out = Vec::new();
    for (level, _, _, bytes) in files(case) {
        if level != 0 {
            continue;
        }
        let d = decode(&bytes).unwrap();
        let ps = d.header.page_size as usize;
        db.resize(d.header.commit as usize * ps, 0);
        for (pgno, page) in &d.pages {
            let at = (*pgno as usize - 1) * ps;
            db[at..at + ps].copy_from_slice(page);
        }
        let post = db_checksum(d.header.page_size, &db).value();
        let header = Header {
            flags: 0,
            pre_apply_checksum: if d.header.is_snapshot() { 0 } else { prev },
            ..d.header.clone()
        };
        let mut enc = Encoder::new(Vec::new(), &header).unwrap();
        for (pgno, page) in &d.pages {
            enc.write_page(*pgno, page).unwrap();
        }
        out.push((enc.finish(post).unwrap().0, post));
        prev = post;
    }
    out
}

/// Files with real checksums decode (the snapshot's post-apply checksum is verified against its
/// pages), chain through the compactor, and end at the manifest's database checksum.
///
/// Litestream 0.5.17 itself cannot restore such a replica (checked with the real binary, which
/// this test does not need): its restore compactor writes NoChecksum output yet copies the last
/// input's non-zero post-apply checksum, and fails with "validate trailer: post-apply checksum
/// not allowed". Before that it does verify the first snapshot's post-apply checksum against
/// its pages, with the same formula as `db_checksum`.
#[test]
fn fixtures_real_checksum_chain_compacts_to_manifest_checksum() {
    for case in CASES {
        let m = manifest(case);
        let chain = with_real_checksums(case);
        for (i, (bytes, post)) in chain.iter().enumerate() {
            let d = decode(bytes).unwrap();
            assert!(!d.header.no_checksum());
            assert_eq!(d.trailer.post_apply_checksum, *post);
            if i > 0 {
                assert_eq!(d.header.pre_apply_checksum, chain[i - 1].1);
            }
        }
        let decoders = chain
            .iter()
            .map(|(b, _)| Decoder::new(b.as_slice()).unwrap())
            .collect();
        let c = Compactor::new(decoders).unwrap();
        let h = c.header().clone();
        assert!(h.is_snapshot() && !h.no_checksum());
        let (out, trailer) = c.write_ltx(&h, Vec::new()).unwrap();
        let want = m["latest"]["db_checksum"].as_str().unwrap();
        assert_eq!(
            format!("{:016x}", trailer.post_apply_checksum),
            want,
            "{case}"
        );
        // The compacted snapshot passes the decoder's own snapshot checksum check.
        decode(&out).unwrap();

        // A broken link in the chain is caught.
        if chain.len() >= 3 {
            let mut broken: Vec<Vec<u8>> = chain.iter().map(|(b, _)| b.clone()).collect();
            let d = decode(&broken[2]).unwrap();
            let header = Header {
                pre_apply_checksum: d.header.pre_apply_checksum ^ 1,
                ..d.header
            };
            let mut enc = Encoder::new(Vec::new(), &header).unwrap();
            for (pgno, page) in &d.pages {
                enc.write_page(*pgno, page).unwrap();
            }
            broken[2] = enc.finish(d.trailer.post_apply_checksum).unwrap().0;
            let decoders = broken
                .iter()
                .map(|b| Decoder::new(b.as_slice()).unwrap())
                .collect();
            let c = Compactor::new(decoders).unwrap();
            let h = c.header().clone();
            assert!(
                matches!(c.write_ltx(&h, Vec::new()), Err(Error::Compaction(_))),
                "{case}"
            );
        }
    }
}
