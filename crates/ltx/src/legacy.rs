//! Legacy page frames: superfly/ltx up to v0.5.1 stored each page as a complete LZ4 *frame*
//! (no size prefix, page flag 0), so files from early Litestream 0.5 releases look like that.

use std::io::Read;

use crate::decoder::{max_compressed_size, read_exact};
use crate::{Error, Result};

const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// Upper bound on a legacy LZ4 frame holding one page: the block bound plus the frame header,
/// a few block headers and checksums. Anything longer is rejected rather than buffered.
fn max_frame_size(page_size: usize) -> u64 {
    max_compressed_size(page_size as u32) as u64 + 256
}

/// Counts the bytes read through it.
struct Counted<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Reads one page stored as a complete LZ4 frame into `buf`, consuming exactly the frame's
/// bytes. `what` names the frame in errors.
///
/// The frame is parsed here rather than by `lz4_flex::frame`, which would read past its end
/// looking for a next frame and allocates a block buffer of up to 4 MiB per frame. Block and
/// content xxHash checksums are skipped, not verified: the LTX file checksum covers the
/// decompressed page. `comp` is scratch space.
pub(crate) fn read_lz4_frame<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    comp: &mut Vec<u8>,
    what: &str,
) -> Result<()> {
    let mut r = Counted { inner: r, n: 0 };
    let corrupt = |msg: String| Error::Corrupt(format!("{what}: {msg}"));
    let ctx = || what.to_string();
    let limit = max_frame_size(buf.len());
    let mut fh = [0u8; 6];
    read_exact(&mut r, &mut fh, ctx)?;
    let magic = u32::from_le_bytes([fh[0], fh[1], fh[2], fh[3]]);
    if magic != LZ4_FRAME_MAGIC {
        return Err(corrupt(format!("bad magic 0x{magic:08x}")));
    }
    let (flg, bd) = (fh[4], fh[5]);
    if flg >> 6 != 1 || flg & 0b10 != 0 || bd & 0x8F != 0 {
        return Err(corrupt(format!(
            "bad descriptor FLG 0x{flg:02x} BD 0x{bd:02x}"
        )));
    }
    let block_max: usize = match (bd >> 4) & 7 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        code => return Err(corrupt(format!("bad block size code {code}"))),
    };
    let linked = flg & 0x20 == 0;
    let block_checksums = flg & 0x10 != 0;
    let content_checksum = flg & 0x04 != 0;
    if flg & 0x01 != 0 {
        return Err(corrupt("uses a dictionary ID, which LTX never does".into()));
    }
    if flg & 0x08 != 0 {
        let mut cs = [0u8; 8];
        read_exact(&mut r, &mut cs, ctx)?;
        let content_size = u64::from_le_bytes(cs);
        if content_size != buf.len() as u64 {
            return Err(corrupt(format!(
                "content size {content_size}, page size is {}",
                buf.len()
            )));
        }
    }
    let mut hc = [0u8; 1];
    read_exact(&mut r, &mut hc, ctx)?;
    let mut pos = 0usize;
    loop {
        let mut bs = [0u8; 4];
        read_exact(&mut r, &mut bs, ctx)?;
        let raw = u32::from_le_bytes(bs);
        if raw == 0 {
            break; // end mark
        }
        let stored = raw & 0x8000_0000 != 0;
        let len = (raw & 0x7FFF_FFFF) as usize;
        if len > block_max || r.n + len as u64 > limit {
            return Err(corrupt(format!("block of {len} bytes is too large")));
        }
        comp.resize(len, 0);
        read_exact(&mut r, comp, ctx)?;
        let (prev, rest) = buf.split_at_mut(pos);
        let n = if stored {
            let dst = rest
                .get_mut(..len)
                .ok_or_else(|| corrupt("decompresses past the page size".into()))?;
            dst.copy_from_slice(comp);
            len
        } else if linked {
            lz4_flex::block::decompress_into_with_dict(comp, rest, prev)
                .map_err(|e| corrupt(format!("LZ4 block: {e}")))?
        } else {
            lz4_flex::block::decompress_into(comp, rest)
                .map_err(|e| corrupt(format!("LZ4 block: {e}")))?
        };
        pos += n;
        if block_checksums {
            read_exact(&mut r, &mut bs, ctx)?;
        }
        if r.n > limit {
            return Err(corrupt("frame is too long".into()));
        }
    }
    if content_checksum {
        let mut c = [0u8; 4];
        read_exact(&mut r, &mut c, ctx)?;
    }
    if pos != buf.len() {
        return Err(corrupt(format!(
            "decompresses to {pos} bytes, page size is {}",
            buf.len()
        )));
    }
    Ok(())
}
