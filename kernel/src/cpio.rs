//! Boot modules may be cpio archives in the "newc" format (what `cpio -o -H
//! newc` writes, as for a Linux initramfs): one boot module then carries
//! several named files (the host config, guest images). Parsing checks every
//! field and length and never panics.

use alloc::string::String;
use alloc::vec::Vec;

const MAGIC: &[u8; 6] = b"070701";
const HEADER: usize = 110;
const TRAILER: &str = "TRAILER!!!";
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Why an archive could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioError {
    BadHeader { offset: usize },
    Truncated { offset: usize },
    BadName { offset: usize },
    NoTrailer,
}

/// Whether `data` starts like a newc archive.
pub fn is_archive(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

fn hex_field(h: &[u8], index: usize) -> Option<u32> {
    let f = h.get(6 + index * 8..6 + index * 8 + 8)?;
    let s = core::str::from_utf8(f).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The regular files of the archive, in order, with their paths (leading
/// `./` removed) and their contents in `data` (nothing is copied: the caller
/// decides what to keep and can refuse what does not fit).
pub fn files(data: &[u8]) -> Result<Vec<(String, &[u8])>, CpioError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let h = data
            .get(at..at + HEADER)
            .ok_or(CpioError::Truncated { offset: at })?;
        if !h.starts_with(MAGIC) {
            return Err(CpioError::BadHeader { offset: at });
        }
        let field = |i| hex_field(h, i).ok_or(CpioError::BadHeader { offset: at });
        let mode = field(1)?;
        let size = field(6)? as usize;
        let namesize = field(11)? as usize;
        if namesize == 0 {
            return Err(CpioError::BadName { offset: at });
        }
        let name_start = at + HEADER;
        let name_bytes = data
            .get(name_start..name_start + namesize - 1)
            .ok_or(CpioError::Truncated { offset: at })?;
        let name =
            core::str::from_utf8(name_bytes).map_err(|_| CpioError::BadName { offset: at })?;
        let data_start = align4(name_start + namesize);
        if name == TRAILER {
            return Ok(out);
        }
        let body = data
            .get(
                data_start
                    ..data_start
                        .checked_add(size)
                        .ok_or(CpioError::Truncated { offset: at })?,
            )
            .ok_or(CpioError::Truncated { offset: at })?;
        if mode & S_IFMT == S_IFREG {
            out.push((String::from(name.trim_start_matches("./")), body));
        }
        at = align4(data_start + size);
        if at >= data.len() {
            return Err(CpioError::NoTrailer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, name: &str, mode: u32, body: &[u8]) {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            body.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(body);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    fn archive() -> Vec<u8> {
        let mut a = Vec::new();
        entry(&mut a, "guests", 0o040755, b"");
        entry(&mut a, "./host-config.bin", 0o100644, b"KEELHCFG...");
        entry(
            &mut a,
            "guests/hello.elf",
            0o100644,
            &[0x7f, b'E', b'L', b'F', 1],
        );
        entry(&mut a, TRAILER, 0, b"");
        a
    }

    #[test]
    fn lists_regular_files() {
        let a = archive();
        assert!(is_archive(&a));
        let f = files(&a).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].0, "host-config.bin");
        assert_eq!(
            f[1],
            (
                String::from("guests/hello.elf"),
                &[0x7f, b'E', b'L', b'F', 1][..]
            )
        );
    }

    #[test]
    fn damaged_archives_are_errors_not_panics() {
        let a = archive();
        // Everything up to the end of the trailer's name is needed.
        let trailer_name_end = a
            .windows(TRAILER.len())
            .rposition(|w| w == TRAILER.as_bytes())
            .unwrap()
            + TRAILER.len();
        for cut in 0..trailer_name_end {
            assert!(files(&a[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..a.len() {
            for x in [1u8, 0x40, 0xff] {
                let mut b = a.clone();
                b[i] ^= x;
                let _ = files(&b);
            }
        }
    }
}
