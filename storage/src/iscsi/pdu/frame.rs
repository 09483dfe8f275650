//! PDU framing on the byte stream: padding, digests, and a decoder that
//! cuts complete PDUs out of whatever the transport delivered.

use alloc::vec::Vec;

use super::{BHS_LEN, DIGEST_LEN, Error, MAX_AHS_LEN, MAX_DATA_SEGMENT_LEN, Packet, Repr, padded};
use crate::iscsi::crc32c::{Crc32c, crc32c};

/// Which CRC32C digests are in use on a connection (both off during login).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub header: bool,
    pub data: bool,
}

/// Appends one PDU (BHS, data, padding and digests) to `out`.
pub fn encode(out: &mut Vec<u8>, repr: &Repr, data: &[u8], digests: Digests) -> Result<(), Error> {
    encode_with_ahs(out, repr, &[], data, digests)
}

/// Like [`encode`], with an additional header segment (a multiple of 4 bytes).
pub fn encode_with_ahs(
    out: &mut Vec<u8>,
    repr: &Repr,
    ahs: &[u8],
    data: &[u8],
    digests: Digests,
) -> Result<(), Error> {
    if !ahs.len().is_multiple_of(4) || ahs.len() > MAX_AHS_LEN {
        return Err(Error::BadAhs);
    }
    if data.len() > MAX_DATA_SEGMENT_LEN {
        return Err(Error::DataTooLong {
            len: data.len(),
            max: MAX_DATA_SEGMENT_LEN,
        });
    }
    let start = out.len();
    out.resize(start + BHS_LEN, 0);
    {
        let mut p = Packet::new_unchecked(&mut out[start..]);
        repr.emit(&mut p);
        p.set_total_ahs_len(ahs.len());
        p.set_data_segment_len(data.len());
    }
    out.extend_from_slice(ahs);
    if digests.header {
        let d = crc32c(&out[start..]);
        out.extend_from_slice(&d.to_le_bytes());
    }
    if !data.is_empty() {
        let pad = padded(data.len()) - data.len();
        let data_start = out.len();
        out.extend_from_slice(data);
        out.extend_from_slice(&[0u8; 3][..pad]);
        if digests.data {
            let d = crc32c(&out[data_start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
    }
    Ok(())
}

/// One received PDU, borrowed from the decoder's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub repr: Repr,
    pub ahs: &'a [u8],
    /// The data segment without padding.
    pub data: &'a [u8],
}

/// Accumulates received bytes and yields complete, digest-checked PDUs.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    digests: Digests,
    max_data: usize,
}

impl Decoder {
    /// `max_data` is the MaxRecvDataSegmentLength we declared: a longer
    /// data segment is a protocol error, never an allocation.
    pub fn new(max_data: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            end: 0,
            digests: Digests::default(),
            max_data: max_data.min(MAX_DATA_SEGMENT_LEN),
        }
    }

    pub fn set_digests(&mut self, digests: Digests) {
        self.digests = digests;
    }

    pub fn digests(&self) -> Digests {
        self.digests
    }

    pub fn set_max_data(&mut self, max: usize) {
        self.max_data = max.min(MAX_DATA_SEGMENT_LEN);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The bytes received but not yet returned as frames.
    pub fn buffered_bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops the first `n` buffered bytes: the caller took a PDU's header
    /// (from [`Decoder::peek_header`]) and the start of its data itself.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// The next PDU's header once it is complete and its digest checked,
    /// before its data has all arrived: `(header, offset of the data
    /// segment, data segment length)`. `None` while the header is
    /// incomplete; errors as [`Decoder::next_frame`] reports them.
    pub fn peek_header(&self) -> Option<Result<(Repr, usize, usize), Error>> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < BHS_LEN {
            return None;
        }
        let head = Packet::new_unchecked(avail);
        let data_len = head.data_segment_len();
        if data_len > self.max_data {
            return Some(Err(Error::DataTooLong {
                len: data_len,
                max: self.max_data,
            }));
        }
        let header_len = head.header_len();
        let data_start = header_len + if self.digests.header { DIGEST_LEN } else { 0 };
        if avail.len() < data_start {
            return None;
        }
        if self.digests.header {
            let expected = crc32c(&avail[..header_len]);
            let received = le32(&avail[header_len..data_start]);
            if expected != received {
                return Some(Err(Error::HeaderDigest { expected, received }));
            }
        }
        Some(Repr::parse(&head).map(|r| (r, data_start, data_len)))
    }

    /// Hands over the bytes received but not yet returned as frames (the
    /// start of the full-feature stream when a login ends).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..self.end].to_vec();
        self.clear();
        rest
    }

    /// Drops everything buffered (after a connection drop).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// A buffer of at least `min` free bytes to read into; call
    /// [`Decoder::commit`] with the count actually read.
    pub fn read_space(&mut self, min: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() - self.end < min {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < min {
                self.buf.resize(self.end + min, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let space = self.read_space(bytes.len());
        space[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// Bytes the next PDU still needs, if its header is known (a hint for
    /// sizing reads).
    pub fn wanted(&self) -> usize {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < BHS_LEN {
            return BHS_LEN - avail.len();
        }
        let p = Packet::new_unchecked(avail);
        if p.data_segment_len() > self.max_data {
            // next_frame reports the error; never size a read by it.
            return 0;
        }
        self.wire_len(&p).saturating_sub(avail.len())
    }

    fn wire_len<T: AsRef<[u8]>>(&self, p: &Packet<T>) -> usize {
        let mut len = p.header_len();
        if self.digests.header {
            len += DIGEST_LEN;
        }
        let data = p.data_segment_len();
        if data > 0 {
            len += padded(data);
            if self.digests.data {
                len += DIGEST_LEN;
            }
        }
        len
    }

    /// The next complete PDU, `None` if more bytes are needed. After an
    /// error the stream is unusable (ERL 0: drop the connection).
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, Error>> {
        let (repr, data_start, data_len) = match self.peek_header()? {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        let avail = &self.buf[self.start..self.end];
        let head = Packet::new_unchecked(avail);
        let total = self.wire_len(&head);
        if avail.len() < total {
            return None;
        }
        let pdu = &avail[..total];
        if data_len > 0 && self.digests.data {
            let padded_end = data_start + padded(data_len);
            let mut c = Crc32c::new();
            c.update(&pdu[data_start..padded_end]);
            let expected = c.finish();
            let received = le32(&pdu[padded_end..padded_end + DIGEST_LEN]);
            if expected != received {
                return Some(Err(Error::DataDigest { expected, received }));
            }
        }
        self.start += total;
        Some(Ok(Frame {
            repr,
            ahs: &pdu[BHS_LEN..head.header_len()],
            data: &pdu[data_start..data_start + data_len],
        }))
    }
}

fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_le_bytes(a)
}
