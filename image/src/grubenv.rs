//! GRUB's environment block (`grub-editenv` format): exactly 1024 bytes,
//! `# GRUB Environment Block\n`, then `name=value\n` lines, padded with `#`.
//! Values escape `\` and newline with a backslash.
//!
//! On a keel disk the block is the file `GRUBENV` on the ESP (see
//! [`crate::esp`]); GRUB reads and rewrites it in place with
//! `load_env`/`save_env -f /GRUBENV`, and so does the appliance's upgrade
//! writer, with this module.

use alloc::string::String;
use alloc::vec::Vec;

/// Size of the block.
pub const BLOCK_BYTES: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

/// Why a block cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// Not 1024 bytes or no GRUB header.
    NotAnEnvBlock,
    /// A line is not `name=value` or not UTF-8.
    BadLine(usize),
    /// The variables do not fit in 1024 bytes.
    TooLarge,
    /// A name is empty or holds `=`, `#`, whitespace.
    BadName,
}

impl core::fmt::Display for EnvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotAnEnvBlock => f.write_str("not a GRUB environment block"),
            Self::BadLine(n) => write!(f, "GRUB environment block line {n} is malformed"),
            Self::TooLarge => f.write_str("variables exceed the 1024-byte environment block"),
            Self::BadName => f.write_str("invalid GRUB environment variable name"),
        }
    }
}

/// The variables of a block, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvBlock {
    vars: Vec<(String, String)>,
}

impl EnvBlock {
    pub fn new() -> EnvBlock {
        EnvBlock::default()
    }

    pub fn parse(bytes: &[u8]) -> Result<EnvBlock, EnvError> {
        if bytes.len() != BLOCK_BYTES || !bytes.starts_with(HEADER.as_bytes()) {
            return Err(EnvError::NotAnEnvBlock);
        }
        let body = &bytes[HEADER.len()..];
        let mut vars = Vec::new();
        let mut line_no = 1;
        let mut rest = body;
        while let Some(end) = find_line_end(rest) {
            line_no += 1;
            let line = &rest[..end];
            rest = &rest[end + 1..];
            if line.is_empty() || line[0] == b'#' {
                continue;
            }
            let text = core::str::from_utf8(line).map_err(|_| EnvError::BadLine(line_no))?;
            let (name, value) = text.split_once('=').ok_or(EnvError::BadLine(line_no))?;
            vars.push((String::from(name), unescape(value)));
        }
        Ok(EnvBlock { vars })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or adds) a variable.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EnvError> {
        if name.is_empty()
            || name
                .chars()
                .any(|c| c == '=' || c == '#' || c.is_whitespace())
        {
            return Err(EnvError::BadName);
        }
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = String::from(value),
            None => self.vars.push((String::from(name), String::from(value))),
        }
        Ok(())
    }

    /// The 1024-byte block.
    pub fn render(&self) -> Result<[u8; BLOCK_BYTES], EnvError> {
        let mut out = [b'#'; BLOCK_BYTES];
        let mut text = String::from(HEADER);
        for (name, value) in &self.vars {
            text.push_str(name);
            text.push('=');
            for c in value.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '\n' => text.push_str("\\\n"),
                    c => text.push(c),
                }
            }
            text.push('\n');
        }
        if text.len() > BLOCK_BYTES {
            return Err(EnvError::TooLarge);
        }
        out[..text.len()].copy_from_slice(text.as_bytes());
        Ok(out)
    }
}

/// The end of the current line: a newline not escaped by a backslash.
fn find_line_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        let mut env = EnvBlock::new();
        env.set("keel_active", "a").expect("set");
        env.set("keel_trial", "").expect("set");
        env.set("odd", "x\\y\nz").expect("set");
        let block = env.render().expect("fits");
        assert!(block.starts_with(b"# GRUB Environment Block\nkeel_active=a\nkeel_trial=\n"));
        assert_eq!(block[BLOCK_BYTES - 1], b'#');
        let back = EnvBlock::parse(&block).expect("parse");
        assert_eq!(back, env);
        assert_eq!(back.get("odd"), Some("x\\y\nz"));
        assert_eq!(back.get("missing"), None);
    }

    #[test]
    fn bad_blocks_are_errors() {
        assert_eq!(EnvBlock::parse(b"short"), Err(EnvError::NotAnEnvBlock));
        let mut block = EnvBlock::new().render().expect("empty");
        block[HEADER.len()..HEADER.len() + 6].copy_from_slice(b"novar\n");
        assert_eq!(EnvBlock::parse(&block), Err(EnvError::BadLine(2)));
        let mut env = EnvBlock::new();
        assert_eq!(env.set("a=b", "c"), Err(EnvError::BadName));
        env.set("big", &"x".repeat(1100)).expect("set");
        assert_eq!(env.render(), Err(EnvError::TooLarge));
    }

    #[test]
    fn parse_never_panics_on_garbage() {
        let mut block = [0xFFu8; BLOCK_BYTES];
        block[..HEADER.len()].copy_from_slice(HEADER.as_bytes());
        block[BLOCK_BYTES - 1] = b'\\';
        let _ = EnvBlock::parse(&block);
        block[HEADER.len()] = b'\n';
        let _ = EnvBlock::parse(&block);
    }
}
