use std::io::Write;

use crate::{Header, Result, Trailer};

/// Streams pages into an LTX file. Pages must be given in ascending pgno order, each exactly
/// `page_size` bytes, never the lock page. Computes the file checksum and writes the page index.
pub struct Encoder<W: Write> {
    w: W,
}

impl<W: Write> Encoder<W> {
    /// Validates and writes the header.
    pub fn new(w: W, header: &Header) -> Result<Self> {
        let _ = header;
        todo!()
    }
    /// Compresses one page as an LZ4 block with the size-prefix flag and writes its frame.
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        let _ = (pgno, data, &self.w);
        todo!()
    }
    /// Writes the end marker, the page index, its length and the trailer. Returns the writer
    /// (flushed, not synced) and the trailer.
    pub fn finish(self, post_apply_checksum: u64) -> Result<(W, Trailer)> {
        let _ = post_apply_checksum;
        todo!()
    }
}
