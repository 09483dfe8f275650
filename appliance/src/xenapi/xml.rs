//! A small pull tokenizer for the XML that XML-RPC uses: elements, text,
//! character and the five predefined entity references, comments,
//! processing instructions and CDATA. No DTDs (so no entity expansion
//! bombs) and no namespaces. Attributes are checked for shape and ignored.
//!
//! It never panics and never recurses; nesting is bounded by [`MAX_DEPTH`].

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt;

/// Deepest element nesting accepted. XML-RPC needs five levels per nested
/// value; 128 admits values nested some 25 deep.
pub const MAX_DEPTH: usize = 128;

/// One piece of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    /// `<name ...>`
    Open(&'a str),
    /// `</name>`
    Close(&'a str),
    /// `<name .../>`
    Empty(&'a str),
    /// Character data with references decoded.
    Text(Cow<'a, str>),
}

/// Why a document was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlError {
    /// The body is not UTF-8.
    NotUtf8,
    /// The document ends inside a construct or before its root closes.
    UnexpectedEnd,
    /// Bytes that are not well-formed XML at this offset.
    Malformed { at: usize },
    /// An entity or character reference that is unknown or invalid.
    BadReference { at: usize },
    /// `<!DOCTYPE`: DTDs are not accepted.
    Doctype,
    /// Elements nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An end tag that does not match its start tag.
    MismatchedTag { at: usize },
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::NotUtf8 => write!(f, "the body is not UTF-8"),
            XmlError::UnexpectedEnd => write!(f, "the XML document ends early"),
            XmlError::Malformed { at } => write!(
                f,
                "malformed XML, or not the XML-RPC expected, near byte {at}"
            ),
            XmlError::BadReference { at } => {
                write!(f, "unknown entity or character reference at byte {at}")
            }
            XmlError::Doctype => write!(f, "DOCTYPE declarations are not accepted"),
            XmlError::TooDeep => write!(f, "XML nested deeper than {MAX_DEPTH} elements"),
            XmlError::MismatchedTag { at } => {
                write!(f, "end tag does not match its start tag at byte {at}")
            }
        }
    }
}

/// Walks a document token by token.
#[derive(Debug)]
pub struct Tokenizer<'a> {
    src: &'a str,
    pos: usize,
    /// Open element names, innermost last (bounded by [`MAX_DEPTH`]).
    open: heapless::Vec<&'a str, MAX_DEPTH>,
    root_seen: bool,
}

impl<'a> Tokenizer<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, XmlError> {
        let src = core::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)?;
        // A byte-order mark may precede the prolog.
        let src = src.strip_prefix('\u{feff}').unwrap_or(src);
        Ok(Tokenizer {
            src,
            pos: 0,
            open: heapless::Vec::new(),
            root_seen: false,
        })
    }

    /// Byte offset of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next token, `Ok(None)` at a well-formed end of the document.
    pub fn next_token(&mut self) -> Result<Option<Token<'a>>, XmlError> {
        loop {
            let rest = self.src.get(self.pos..).ok_or(XmlError::UnexpectedEnd)?;
            if rest.is_empty() {
                return if self.open.is_empty() && self.root_seen {
                    Ok(None)
                } else {
                    Err(XmlError::UnexpectedEnd)
                };
            }
            if let Some(markup) = rest.strip_prefix('<') {
                if let Some(token) = self.markup(markup)? {
                    return Ok(Some(token));
                }
                continue;
            }
            let end = rest.find('<').unwrap_or(rest.len());
            let raw = rest.get(..end).unwrap_or_default();
            let at = self.pos;
            self.pos += end;
            if self.open.is_empty() {
                // Outside the root only whitespace may appear.
                if !raw.bytes().all(is_space) {
                    return Err(XmlError::Malformed { at });
                }
                continue;
            }
            return Ok(Some(Token::Text(decode_text(raw, at)?)));
        }
    }

    /// Handles what follows a `<`; `None` for markup that yields no token.
    fn markup(&mut self, rest: &'a str) -> Result<Option<Token<'a>>, XmlError> {
        let at = self.pos;
        if let Some(body) = rest.strip_prefix("!--") {
            let end = body.find("-->").ok_or(XmlError::UnexpectedEnd)?;
            self.pos += 4 + end + 3;
            return Ok(None);
        }
        if let Some(body) = rest.strip_prefix("![CDATA[") {
            if self.open.is_empty() {
                return Err(XmlError::Malformed { at });
            }
            let end = body.find("]]>").ok_or(XmlError::UnexpectedEnd)?;
            self.pos += 9 + end + 3;
            return Ok(Some(Token::Text(Cow::Borrowed(
                body.get(..end).unwrap_or_default(),
            ))));
        }
        if rest.starts_with("!DOCTYPE") || rest.starts_with("!doctype") {
            return Err(XmlError::Doctype);
        }
        if let Some(body) = rest.strip_prefix('?') {
            let end = body.find("?>").ok_or(XmlError::UnexpectedEnd)?;
            self.pos += 2 + end + 2;
            return Ok(None);
        }
        let close = rest.find('>').ok_or(XmlError::UnexpectedEnd)?;
        let inner = rest.get(..close).unwrap_or_default();
        self.pos += 1 + close + 1;
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim_end_matches(is_space_char);
            check_name(name, at)?;
            return match self.open.pop() {
                Some(open) if open == name => Ok(Some(Token::Close(name))),
                _ => Err(XmlError::MismatchedTag { at }),
            };
        }
        let (inner, empty) = match inner.strip_suffix('/') {
            Some(inner) => (inner, true),
            None => (inner, false),
        };
        let name_end = inner.find(is_space_char).unwrap_or(inner.len());
        let name = inner.get(..name_end).unwrap_or_default();
        check_name(name, at)?;
        check_attributes(inner.get(name_end..).unwrap_or_default(), at)?;
        if self.open.is_empty() && self.root_seen {
            // A second root element.
            return Err(XmlError::Malformed { at });
        }
        self.root_seen = true;
        if empty {
            return Ok(Some(Token::Empty(name)));
        }
        self.open.push(name).map_err(|_| XmlError::TooDeep)?;
        Ok(Some(Token::Open(name)))
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_space_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn check_name(name: &str, at: usize) -> Result<(), XmlError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
    let rest_ok = chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(XmlError::Malformed { at })
    }
}

/// `( S name S? = S? ("..." | '...') )* S?`
fn check_attributes(mut s: &str, at: usize) -> Result<(), XmlError> {
    let bad = XmlError::Malformed { at };
    loop {
        let trimmed = s.trim_start_matches(is_space_char);
        if trimmed.is_empty() {
            return Ok(());
        }
        if trimmed.len() == s.len() {
            return Err(bad);
        }
        let eq = trimmed.find('=').ok_or(bad)?;
        check_name(
            trimmed
                .get(..eq)
                .unwrap_or_default()
                .trim_end_matches(is_space_char),
            at,
        )?;
        let value = trimmed
            .get(eq + 1..)
            .unwrap_or_default()
            .trim_start_matches(is_space_char);
        let quote = value
            .chars()
            .next()
            .filter(|q| *q == '"' || *q == '\'')
            .ok_or(bad)?;
        let body = value.get(1..).unwrap_or_default();
        let end = body.find(quote).ok_or(bad)?;
        if body.get(..end).unwrap_or_default().contains('<') {
            return Err(bad);
        }
        s = body.get(end + 1..).unwrap_or_default();
    }
}

/// Decodes references in character data; borrows when there are none.
fn decode_text(raw: &str, at: usize) -> Result<Cow<'_, str>, XmlError> {
    if raw.contains('>') && raw.contains("]]>") {
        return Err(XmlError::Malformed { at });
    }
    if !raw.contains('&') {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let semi = after
            .find(';')
            .filter(|&i| i <= 10)
            .ok_or(XmlError::BadReference { at })?;
        let name = after.get(..semi).unwrap_or_default();
        out.push(reference(name).ok_or(XmlError::BadReference { at })?);
        rest = after.get(semi + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

fn reference(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let number = name.strip_prefix('#')?;
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse::<u32>().ok()?,
            };
            char::from_u32(code).filter(|&c| c != '\0')
        }
    }
}

/// Appends `text` to `out` escaped for character data. CR is escaped too, or
/// a parser's end-of-line normalisation would turn it into LF.
pub fn escape_into(out: &mut String, text: &str) {
    // Copies the runs between special characters whole: records are mostly
    // plain text, and a char-by-char push dominated large answers.
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\r' => "&#13;",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        out.push_str(text.get(start..i).unwrap_or_default());
        out.push_str(replacement);
        start = i + 1;
    }
    out.push_str(text.get(start..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn tokens(doc: &str) -> Result<Vec<Token<'_>>, XmlError> {
        let mut t = Tokenizer::new(doc.as_bytes())?;
        let mut out = Vec::new();
        while let Some(token) = t.next_token()? {
            out.push(token);
        }
        Ok(out)
    }

    #[test]
    fn elements_text_and_references() {
        let doc = "<?xml version='1.0'?>\n<!-- c --><a x=\"1\" y='2'><b/>t&amp;&lt;&#65;&#x42;<![CDATA[<raw>]]></a>\n";
        assert_eq!(
            tokens(doc).unwrap(),
            [
                Token::Open("a"),
                Token::Empty("b"),
                Token::Text(Cow::Owned(String::from("t&<AB"))),
                Token::Text(Cow::Borrowed("<raw>")),
                Token::Close("a"),
            ]
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(tokens("<a>").unwrap_err(), XmlError::UnexpectedEnd);
        assert_eq!(tokens("").unwrap_err(), XmlError::UnexpectedEnd);
        assert!(matches!(
            tokens("<a></b>"),
            Err(XmlError::MismatchedTag { .. })
        ));
        assert!(matches!(
            tokens("<a>&bogus;</a>"),
            Err(XmlError::BadReference { .. })
        ));
        assert!(matches!(
            tokens("<a>&#0;</a>"),
            Err(XmlError::BadReference { .. })
        ));
        assert_eq!(tokens("<!DOCTYPE a><a/>").unwrap_err(), XmlError::Doctype);
        assert!(matches!(
            tokens("<a/><b/>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(tokens("x<a/>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(tokens("<1a/>"), Err(XmlError::Malformed { .. })));
        assert!(matches!(
            tokens("<a b=c/>"),
            Err(XmlError::Malformed { .. })
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert_eq!(tokens(&deep).unwrap_err(), XmlError::TooDeep);
        assert_eq!(
            Tokenizer::new(b"<a>\xff</a>").unwrap_err(),
            XmlError::NotUtf8
        );
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>&\r\"");
        assert_eq!(out, "a&lt;b&gt;&amp;&#13;\"");
        // Multi-byte characters around and between the escapes stay whole.
        let mut out = String::new();
        escape_into(&mut out, "é<ü&€x>");
        assert_eq!(out, "é&lt;ü&amp;€x&gt;");
        let mut out = String::from("kept ");
        escape_into(&mut out, "");
        escape_into(&mut out, "plain ünïcode");
        assert_eq!(out, "kept plain ünïcode");
    }
}
