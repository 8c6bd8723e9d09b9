use std::io::{Read, Write};

use crate::{Decoder, Encoder, Error, Header, Result, Trailer, FLAG_NO_CHECKSUM};

/// Merges contiguous LTX files into one stream of pages, the newest page winning and pages above
/// the final commit dropped. Memory: one page per input.
///
/// The merged header takes MinTXID and pre-apply checksum from the first input, MaxTXID, commit,
/// WAL fields and post-apply checksum from the last, the timestamp from the newest input. It has
/// NoChecksum if any input has it.
///
/// (With NoChecksum the pre-apply checksum is 0, as validation requires. Litestream's own
/// compactor writes zero WAL fields and node ID into compacted files; pass such a header to
/// [`Compactor::write_ltx`] to match its output.)
///
/// Used both to write a compacted LTX file ([`Compactor::write_ltx`]) and, by restore, to write a
/// database file page by page ([`Compactor::next_page`]). When the first input is a snapshot
/// (MinTXID 1) the output is a snapshot too.
pub struct Compactor<R: Read> {
    inputs: Vec<Decoder<R>>,
    header: Header,
    /// Per input: the page buffered from it, if any.
    pending: Vec<Option<u32>>,
    /// Per input: the page buffer.
    bufs: Vec<Vec<u8>>,
    /// Per input: its end marker was read.
    done: Vec<bool>,
}

impl<R: Read> Compactor<R> {
    /// `inputs` in TXID order. Each input must start no later than right after the previous one
    /// (MinTXID ≤ previous MaxTXID + 1) and reach further (MaxTXID > previous MaxTXID); all page
    /// sizes must agree. If `inputs[0]` is not a snapshot, the output is not one either.
    ///
    /// Overlap is allowed because it is sound: an LTX file holds the final image of every page
    /// changed in its range, so laying `b` over the state at `a.max` (inside `b`'s range) gives
    /// the state at `b.max`. It happens in every replica with history: an L1 file's interval
    /// straddles the TXID at which a snapshot was taken.
    pub fn new(inputs: Vec<Decoder<R>>) -> Result<Self> {
        let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
            return Err(Error::Compaction("no input files".into()));
        };
        let (first, last) = (first.header().clone(), last.header().clone());
        for pair in inputs.windows(2) {
            let (a, b) = (pair[0].header(), pair[1].header());
            if a.page_size != b.page_size {
                return Err(Error::Compaction(format!(
                    "page size {} of {}-{} differs from page size {} of {}-{}",
                    b.page_size, b.min_txid, b.max_txid, a.page_size, a.min_txid, a.max_txid
                )));
            }
            let starts_in_time = b.min_txid.0 <= a.max_txid.0.saturating_add(1);
            if !starts_in_time || b.max_txid <= a.max_txid || b.min_txid.0 == 0 {
                return Err(Error::Compaction(format!(
                    "not contiguous: {}-{} then {}-{}",
                    a.min_txid, a.max_txid, b.min_txid, b.max_txid
                )));
            }
        }
        let no_checksum = inputs.iter().any(|d| d.header().no_checksum());
        let header = Header {
            flags: if no_checksum { FLAG_NO_CHECKSUM } else { 0 },
            page_size: first.page_size,
            commit: last.commit,
            min_txid: first.min_txid,
            max_txid: last.max_txid,
            timestamp: last.timestamp,
            pre_apply_checksum: if no_checksum {
                0
            } else {
                first.pre_apply_checksum
            },
            wal_offset: last.wal_offset,
            wal_size: last.wal_size,
            wal_salt1: last.wal_salt1,
            wal_salt2: last.wal_salt2,
            node_id: last.node_id,
        };
        header.validate()?;
        let n = inputs.len();
        Ok(Compactor {
            inputs,
            header,
            pending: vec![None; n],
            bufs: vec![Vec::new(); n],
            done: vec![false; n],
        })
    }
    /// The merged header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Next merged page in ascending pgno order, or `None` when done.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        if buf.len() != self.header.page_size as usize {
            return Err(Error::InvalidArgument(format!(
                "page buffer is {} bytes, page size is {}",
                buf.len(),
                self.header.page_size
            )));
        }
        loop {
            // Fill every empty buffer, then take the lowest pgno, newest input first.
            let mut lowest: Option<(u32, usize)> = None;
            for i in 0..self.inputs.len() {
                if self.pending[i].is_none() && !self.done[i] {
                    let page = &mut self.bufs[i];
                    if page.is_empty() {
                        page.resize(self.header.page_size as usize, 0);
                    }
                    match self.inputs[i].next_page(page)? {
                        Some(pgno) => self.pending[i] = Some(pgno),
                        None => self.done[i] = true,
                    }
                }
                if let Some(pgno) = self.pending[i] {
                    // `<=` so that for equal pgnos the later (newer) input wins.
                    if lowest.is_none_or(|(low, _)| pgno <= low) {
                        lowest = Some((pgno, i));
                    }
                }
            }
            let Some((pgno, winner)) = lowest else {
                return Ok(None);
            };
            for p in self.pending.iter_mut() {
                if *p == Some(pgno) {
                    *p = None;
                }
            }
            if pgno > self.header.commit {
                continue; // the database shrank later on
            }
            buf.copy_from_slice(&self.bufs[winner]);
            return Ok(Some(pgno));
        }
    }
    /// Finishes every input (verifying each file checksum) and returns the last input's trailer.
    ///
    /// When two neighbouring, exactly contiguous inputs both track checksums (no NoChecksum), the
    /// later one's pre-apply checksum must equal the earlier one's post-apply checksum.
    pub fn finish(self) -> Result<Trailer> {
        let mut last: Option<(Header, Trailer)> = None;
        for dec in self.inputs {
            let header = dec.header().clone();
            let trailer = dec.finish()?;
            if let Some((prev_h, prev_t)) = &last {
                if !prev_h.no_checksum()
                    && !header.no_checksum()
                    && prev_h.max_txid.0.checked_add(1) == Some(header.min_txid.0)
                    && prev_t.post_apply_checksum != header.pre_apply_checksum
                {
                    return Err(Error::Compaction(format!(
                        "checksum chain broken: {}-{} ends at {:016x}, {}-{} starts from {:016x}",
                        prev_h.min_txid,
                        prev_h.max_txid,
                        prev_t.post_apply_checksum,
                        header.min_txid,
                        header.max_txid,
                        header.pre_apply_checksum
                    )));
                }
            }
            last = Some((header, trailer));
        }
        Ok(last.map(|(_, t)| t).unwrap_or_default())
    }
    /// Writes all merged pages as one LTX file with `header` (usually [`Compactor::header`],
    /// possibly with a changed timestamp), then finishes.
    ///
    /// The post-apply checksum is the last input's, or 0 if `header` has NoChecksum.
    pub fn write_ltx<W: Write>(mut self, header: &Header, w: W) -> Result<(W, Trailer)> {
        if header.page_size != self.header.page_size {
            return Err(Error::InvalidArgument(format!(
                "output page size {} differs from the inputs' {}",
                header.page_size, self.header.page_size
            )));
        }
        let mut enc = Encoder::new(w, header)?;
        let mut page = vec![0u8; self.header.page_size as usize];
        while let Some(pgno) = self.next_page(&mut page)? {
            if pgno > header.commit {
                continue;
            }
            enc.write_page(pgno, &page)?;
        }
        let last = self.finish()?;
        let post = if header.no_checksum() {
            0
        } else {
            last.post_apply_checksum
        };
        enc.finish(post)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::too_many_arguments)]
mod tests {
    use super::*;
    use crate::checksum::CHECKSUM_FLAG;
    use crate::TxId;

    const PS: u32 = 512;

    fn file(
        min: u64,
        max: u64,
        commit: u32,
        pages: &[(u32, u8)],
        flags: u32,
        pre: u64,
        post: u64,
        ts: i64,
    ) -> Vec<u8> {
        let h = Header {
            flags,
            pre_apply_checksum: pre,
            wal_offset: 32 * min as i64,
            wal_size: 100,
            wal_salt1: min as u32,
            ..Header::new(PS, commit, TxId(min), TxId(max), ts)
        };
        let mut enc = Encoder::new(Vec::new(), &h).unwrap();
        for &(p, fill) in pages {
            enc.write_page(p, &[fill; PS as usize]).unwrap();
        }
        enc.finish(post).unwrap().0
    }

    fn nc(min: u64, max: u64, commit: u32, pages: &[(u32, u8)]) -> Vec<u8> {
        file(
            min,
            max,
            commit,
            pages,
            FLAG_NO_CHECKSUM,
            0,
            0,
            min as i64 * 1000,
        )
    }

    fn compactor(files: &[Vec<u8>]) -> Result<Compactor<&[u8]>> {
        Compactor::new(
            files
                .iter()
                .map(|f| Decoder::new(f.as_slice()).unwrap())
                .collect(),
        )
    }

    fn drain(c: &mut Compactor<&[u8]>) -> Vec<(u32, u8)> {
        let mut buf = vec![0u8; PS as usize];
        let mut out = Vec::new();
        while let Some(p) = c.next_page(&mut buf).unwrap() {
            assert!(buf.iter().all(|&b| b == buf[0]));
            out.push((p, buf[0]));
        }
        out
    }

    #[test]
    fn compactor_newest_page_wins_and_order_ascends() {
        let files = [
            nc(2, 2, 6, &[(1, 1), (3, 1), (6, 1)]),
            nc(3, 4, 6, &[(3, 2), (4, 2)]),
            nc(5, 5, 6, &[(1, 3), (4, 3), (5, 3)]),
        ];
        let mut c = compactor(&files).unwrap();
        assert_eq!(drain(&mut c), vec![(1, 3), (3, 2), (4, 3), (5, 3), (6, 1)]);
        assert_eq!(c.finish().unwrap().post_apply_checksum, 0);
    }

    #[test]
    fn compactor_drops_pages_above_final_commit() {
        let files = [
            nc(2, 2, 8, &[(2, 1), (7, 1), (8, 1)]),
            nc(3, 3, 5, &[(5, 2)]),
        ];
        let mut c = compactor(&files).unwrap();
        assert_eq!(c.header().commit, 5);
        assert_eq!(drain(&mut c), vec![(2, 1), (5, 2)]);
        c.finish().unwrap();
    }

    #[test]
    fn compactor_header_merge_rules() {
        let files = [
            file(
                2,
                3,
                4,
                &[(1, 1)],
                0,
                CHECKSUM_FLAG | 11,
                CHECKSUM_FLAG | 12,
                5000,
            ),
            file(
                4,
                6,
                9,
                &[(9, 2)],
                0,
                CHECKSUM_FLAG | 12,
                CHECKSUM_FLAG | 13,
                7000,
            ),
        ];
        let c = compactor(&files).unwrap();
        let h = c.header().clone();
        assert_eq!(
            (h.min_txid, h.max_txid, h.commit, h.timestamp),
            (TxId(2), TxId(6), 9, 7000)
        );
        assert_eq!(h.flags, 0);
        assert_eq!(h.pre_apply_checksum, CHECKSUM_FLAG | 11);
        assert_eq!((h.wal_offset, h.wal_salt1), (32 * 4, 4));
        let (out, t) = c.write_ltx(&h, Vec::new()).unwrap();
        assert_eq!(t.post_apply_checksum, CHECKSUM_FLAG | 13);
        let mut dec = Decoder::new(out.as_slice()).unwrap();
        assert_eq!(dec.header(), &h);
        let mut buf = vec![0u8; PS as usize];
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(1));
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(9));
        assert_eq!(dec.finish().unwrap(), t);

        // One NoChecksum input makes the output NoChecksum, with zero checksums.
        let files = [
            file(
                2,
                3,
                4,
                &[(1, 1)],
                0,
                CHECKSUM_FLAG | 11,
                CHECKSUM_FLAG | 12,
                5000,
            ),
            nc(4, 4, 4, &[(2, 2)]),
        ];
        let c = compactor(&files).unwrap();
        let h = c.header().clone();
        assert!(h.no_checksum());
        assert_eq!(h.pre_apply_checksum, 0);
        let (_, t) = c.write_ltx(&h, Vec::new()).unwrap();
        assert_eq!(t.post_apply_checksum, 0);
    }

    #[test]
    fn compactor_finish_rejects_broken_checksum_chain() {
        let files = [
            file(
                2,
                3,
                4,
                &[(1, 1)],
                0,
                CHECKSUM_FLAG | 11,
                CHECKSUM_FLAG | 12,
                5000,
            ),
            file(
                4,
                6,
                9,
                &[(9, 2)],
                0,
                CHECKSUM_FLAG | 99,
                CHECKSUM_FLAG | 13,
                7000,
            ),
        ];
        let c = compactor(&files).unwrap();
        let h = c.header().clone();
        let r = c.write_ltx(&h, Vec::new());
        assert!(
            matches!(r, Err(Error::Compaction(ref m)) if m.contains("chain")),
            "{r:?}"
        );
    }

    #[test]
    fn compactor_snapshot_first_gives_snapshot() {
        let files = [
            nc(1, 2, 3, &[(1, 1), (2, 1), (3, 1)]),
            nc(3, 3, 4, &[(2, 2), (4, 2)]),
        ];
        let c = compactor(&files).unwrap();
        assert!(c.header().is_snapshot());
        let h = c.header().clone();
        let (out, _) = c.write_ltx(&h, Vec::new()).unwrap();
        let mut dec = Decoder::new(out.as_slice()).unwrap();
        let mut buf = vec![0u8; PS as usize];
        let mut got = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            got.push((p, buf[0]));
        }
        dec.finish().unwrap();
        assert_eq!(got, vec![(1, 1), (2, 2), (3, 1), (4, 2)]);
    }

    #[test]
    fn compactor_rejects_bad_inputs() {
        assert!(matches!(compactor(&[]), Err(Error::Compaction(_))));
        let gap = [nc(2, 2, 1, &[(1, 1)]), nc(4, 4, 1, &[(1, 1)])];
        assert!(matches!(compactor(&gap), Err(Error::Compaction(_))));
        // Overlap that reaches further is sound (see `Compactor::new`); one that does not is not.
        let overlap = [nc(2, 3, 1, &[(1, 1)]), nc(3, 4, 1, &[(1, 1)])];
        assert!(compactor(&overlap).is_ok());
        let covered = [nc(2, 4, 1, &[(1, 1)]), nc(3, 4, 1, &[(1, 1)])];
        assert!(matches!(compactor(&covered), Err(Error::Compaction(_))));
        let reversed = [nc(3, 3, 1, &[(1, 1)]), nc(2, 2, 1, &[(1, 1)])];
        assert!(matches!(compactor(&reversed), Err(Error::Compaction(_))));
        let other_size = {
            let h = Header {
                flags: FLAG_NO_CHECKSUM,
                ..Header::new(1024, 1, TxId(3), TxId(3), 0)
            };
            let mut enc = Encoder::new(Vec::new(), &h).unwrap();
            enc.write_page(1, &[0u8; 1024]).unwrap();
            enc.finish(0).unwrap().0
        };
        let mixed = [nc(2, 2, 1, &[(1, 1)]), other_size];
        assert!(matches!(compactor(&mixed), Err(Error::Compaction(_))));
    }

    #[test]
    fn compactor_single_input_passes_through() {
        let files = [nc(7, 9, 3, &[(2, 5), (3, 6)])];
        let mut c = compactor(&files).unwrap();
        assert_eq!(drain(&mut c), vec![(2, 5), (3, 6)]);
        c.finish().unwrap();
    }

    #[test]
    fn compactor_wrong_buffer_is_invalid_argument() {
        let files = [nc(7, 7, 3, &[(2, 5)])];
        let mut c = compactor(&files).unwrap();
        assert!(matches!(
            c.next_page(&mut [0u8; 3]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
