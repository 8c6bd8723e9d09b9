use std::io::Read;

use crate::{Header, Result, Trailer};

/// Streams pages out of an LTX file, verifying the file checksum at [`Decoder::finish`].
/// Reads both the size-prefixed LZ4 block frames and the legacy LZ4 frame format.
pub struct Decoder<R: Read> {
    r: R,
    header: Header,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Self> {
        todo!()
    }
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Decodes the next page into `buf` (exactly `page_size` bytes) and returns its pgno, or
    /// `None` at the end marker. Checks order (strictly ascending) and sizes.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        let _ = (buf, &mut self.r);
        todo!()
    }
    /// Reads the rest (index, trailer), verifies the file checksum, and returns the trailer.
    /// Pages not yet read are read and checked first.
    pub fn finish(self) -> Result<Trailer> {
        todo!()
    }
}
