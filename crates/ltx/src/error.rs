/// Everything that can go wrong reading or writing LTX data. Never panics on input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Underlying reader or writer failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with `LTX1`.
    #[error("not an LTX file (bad magic)")]
    BadMagic,
    /// A header field is invalid; the message names it.
    #[error("invalid LTX header: {0}")]
    InvalidHeader(String),
    /// A page frame or the index is malformed; the message says how.
    #[error("corrupt LTX file: {0}")]
    Corrupt(String),
    /// The file checksum in the trailer does not match the content.
    #[error("file checksum mismatch: trailer has {expected:016x}, content gives {actual:016x}")]
    ChecksumMismatch {
        /// Checksum stored in the trailer.
        expected: u64,
        /// Checksum computed over the content.
        actual: u64,
    },
    /// The file ended before its trailer.
    #[error("LTX file truncated: {0}")]
    Truncated(String),
    /// Pages were written out of order or with the wrong size.
    #[error("encoder misuse: {0}")]
    Encode(String),
    /// Inputs to compaction are not contiguous or disagree.
    #[error("cannot compact: {0}")]
    Compaction(String),
    /// Text that is not a hex TXID.
    #[error("invalid TXID {0:?}: expected hex")]
    InvalidTxId(String),
    /// The caller passed something this API cannot take, e.g. a page buffer of the wrong size.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// True when the data itself is bad (bad magic, invalid header, corrupt frame or index,
    /// checksum mismatch, truncation): reading the same bytes again will fail again.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::BadMagic
                | Error::InvalidHeader(_)
                | Error::Corrupt(_)
                | Error::ChecksumMismatch { .. }
                | Error::Truncated(_)
        )
    }
}
