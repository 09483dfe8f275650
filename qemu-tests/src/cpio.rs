//! Writing cpio "newc" archives (initramfs images, boot-module archives).

/// A writer of the cpio "newc" format: what Linux unpacks as an initramfs,
/// and what keel takes as a boot module carrying several files.
#[derive(Debug, Default)]
pub struct Cpio {
    data: Vec<u8>,
    next_inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), body: &[u8]) {
        self.next_inode += 1;
        let name_size = name.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible archives
            u32::try_from(body.len()).unwrap_or(u32::MAX),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            u32::try_from(name_size).unwrap_or(u32::MAX),
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            self.data
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(body);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    pub fn directory(&mut self, name: &str) {
        self.entry(name, 0o040_755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, permissions: u32, body: &[u8]) {
        self.entry(name, 0o100_000 | permissions, 1, (0, 0), body);
    }

    pub fn char_device(&mut self, name: &str, permissions: u32, major: u32, minor: u32) {
        self.entry(name, 0o020_000 | permissions, 1, (major, minor), &[]);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_newc_layout() {
        let mut archive = Cpio::default();
        archive.file("init", 0o755, b"abc");
        let data = archive.finish();
        assert_eq!(&data[..6], b"070701");
        // ino 1, mode 0o100755, filesize 3, namesize 5.
        assert_eq!(&data[6..14], b"00000001");
        assert_eq!(&data[14..22], format!("{:08x}", 0o100_755).as_bytes());
        assert_eq!(&data[54..62], b"00000003");
        assert_eq!(&data[94..102], b"00000005");
        // 110-byte header + "init\0" = 115, padded to 116; then the body padded to 4.
        assert_eq!(&data[110..115], b"init\0");
        assert_eq!(&data[116..119], b"abc");
        assert_eq!(data.len() % 4, 0);
        assert!(data.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
