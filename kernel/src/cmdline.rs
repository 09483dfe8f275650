//! Kernel command line: whitespace-separated `key=value` or bare `flag` words.

/// The value of `key` (the last occurrence wins, as in Linux); `Some("")` for a bare flag.
pub fn get<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for word in cmdline.split_ascii_whitespace() {
        match word.split_once('=') {
            Some((k, v)) if k == key => found = Some(v),
            None if word == key => found = Some(""),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::get;

    #[test]
    fn finds_values_flags_and_last_occurrence() {
        let c = "console=ttyS0 keel.selftest=panic quiet loglevel=info loglevel=debug";
        assert_eq!(get(c, "keel.selftest"), Some("panic"));
        assert_eq!(get(c, "quiet"), Some(""));
        assert_eq!(get(c, "loglevel"), Some("debug"));
        assert_eq!(get(c, "missing"), None);
        assert_eq!(get("", "x"), None);
        assert_eq!(get("a==b", "a"), Some("=b"));
    }
}
