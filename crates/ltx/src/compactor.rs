use std::io::{Read, Write};

use crate::{Decoder, Header, Result, Trailer};

/// Merges contiguous LTX files into one stream of pages, the newest page winning and pages above
/// the final commit dropped. Memory: one page per input.
///
/// The merged header takes MinTXID and pre-apply checksum from the first input, MaxTXID, commit,
/// WAL fields and post-apply checksum from the last, the timestamp from the newest input. It has
/// NoChecksum if any input has it.
///
/// Used both to write a compacted LTX file ([`Compactor::write_ltx`]) and, by restore, to write a
/// database file page by page ([`Compactor::next_page`]).
pub struct Compactor<R: Read> {
    inputs: Vec<Decoder<R>>,
    header: Header,
}

impl<R: Read> Compactor<R> {
    /// `inputs` in TXID order. Fails unless each input's MinTXID is the previous MaxTXID + 1 and all
    /// page sizes agree. If `inputs[0]` is not a snapshot, the output is not one either.
    pub fn new(inputs: Vec<Decoder<R>>) -> Result<Self> {
        let _ = inputs;
        todo!()
    }
    /// The merged header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Next merged page in ascending pgno order, or `None` when done.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        let _ = (buf, &mut self.inputs);
        todo!()
    }
    /// Finishes every input (verifying each file checksum) and returns the last input's trailer.
    pub fn finish(self) -> Result<Trailer> {
        todo!()
    }
    /// Writes all merged pages as one LTX file with `header` (usually [`Compactor::header`],
    /// possibly with a changed timestamp), then finishes.
    pub fn write_ltx<W: Write>(self, header: &Header, w: W) -> Result<(W, Trailer)> {
        let _ = (header, w);
        todo!()
    }
}
