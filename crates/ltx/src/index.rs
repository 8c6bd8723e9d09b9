use crate::Result;

/// One entry of the page index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageIndexElem {
    /// Page number.
    pub pgno: u32,
    /// Absolute offset of the page frame in the file.
    pub offset: u64,
    /// Length of the frame, its 6-byte header included.
    pub size: u64,
}

/// Reads the page index from `tail`, the last bytes of a file (trailer included). Readers fetch the
/// last 32 KiB; if the index is longer than `tail` holds, returns `Err(Error::Truncated)` naming the
/// number of tail bytes needed.
pub fn read_page_index(tail: &[u8]) -> Result<Vec<PageIndexElem>> {
    let _ = tail;
    todo!()
}
