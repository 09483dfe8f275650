//! Character classes and line splitting shared by the request and chunk parsers.

/// `tchar` of RFC 9110 §5.6.2: what methods and header names are made of.
pub(super) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Bytes allowed in a field value: visible ASCII, obs-text, space and tab.
/// Everything else is a control character (CR, LF, NUL, DEL, ...).
pub(super) fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// Strips optional whitespace (space and tab) from both ends.
pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Finds the line starting at `from`: returns the end of its content (before
/// CRLF or a bare LF) and where the next line starts, or `None` when no LF has
/// arrived yet.
pub(super) fn find_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let next = from + lf + 1;
    let end = if lf > 0 && rest.get(lf - 1) == Some(&b'\r') {
        from + lf - 1
    } else {
        from + lf
    };
    Some((end, next))
}

/// Splits a comma-separated header value into trimmed, non-empty elements.
pub(super) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_crlf_or_bare_lf() {
        assert_eq!(find_line(b"ab\r\ncd", 0), Some((2, 4)));
        assert_eq!(find_line(b"ab\ncd", 0), Some((2, 3)));
        assert_eq!(find_line(b"ab\r\ncd\n", 4), Some((6, 7)));
        assert_eq!(find_line(b"\n", 0), Some((0, 1)));
        assert_eq!(find_line(b"ab\r", 0), None);
        assert_eq!(find_line(b"ab", 9), None);
    }

    #[test]
    fn ows_and_lists() {
        assert_eq!(trim_ows(b" \t x y \t"), b"x y");
        assert_eq!(trim_ows(b"   "), b"");
        let elements: Vec<&[u8]> = list_elements(b" a, ,b ,c").collect();
        assert_eq!(elements, vec![&b"a"[..], b"b", b"c"]);
    }
}
