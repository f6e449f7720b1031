//! A small pull reader for JSON text: exactly what decoding change records needs, with no
//! generic tree in between. The caller walks the document (`object`, `array`, `string`, …)
//! and builds its own values; whatever it does not want, `skip` checks and passes over.
//!
//! Strict RFC 8259: any text it accepts, a conforming parser accepts too. Strings without
//! escapes are borrowed from the input, which is most of them.

use std::borrow::Cow;
use std::fmt;

mod tagged;
pub use tagged::TypeTag;

/// How deeply arrays and objects may nest. DynamoDB allows 32 levels of attributes, each
/// two JSON levels, inside an envelope a few levels deep; the limit keeps hostile input from
/// exhausting the stack.
const MAX_DEPTH: u32 = 128;

/// Why a document is not the JSON expected, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What is wrong, for people to read.
    pub message: String,
    /// Byte offset in the document.
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// The result of a reading step.
pub type JsonResult<T> = Result<T, JsonError>;

/// Bytes that end the fast scan of a string: the closing quote, an escape, or a control
/// character (which JSON forbids unescaped).
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of each byte of `word` (little-endian) that is a string stop byte. Bytes
/// above the lowest stop may be flagged falsely; the lowest flag is always exact.
#[inline]
fn string_stops(word: u64) -> u64 {
    let below = |n: u8| word.wrapping_sub(ONES * n as u64) & !word & HIGH_BITS;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH_BITS;
    below(0x20) | zero(word ^ (ONES * b'"' as u64)) | zero(word ^ (ONES * b'\\' as u64))
}

/// What may follow an element of the object or array that `close` ends.
fn after_element(close: u8) -> &'static str {
    if close == b'}' {
        "`,` or `}` in an object"
    } else {
        "`,` or `]` in an array"
    }
}

/// The closing brackets `skip` waits for: a bit each for the first 64 levels, so skipping
/// allocates nothing unless it meets deeper nesting.
#[derive(Default)]
struct OpenBrackets {
    objects: u64,
    len: usize,
    deeper: Vec<u8>,
}

impl OpenBrackets {
    fn push(&mut self, closer: u8) {
        if self.len < 64 {
            self.objects = (self.objects & !(1 << self.len)) | (u64::from(closer == b'}') << self.len);
        } else {
            self.deeper.push(closer);
        }
        self.len += 1;
    }

    fn last(&self) -> Option<&u8> {
        match self.len {
            0 => None,
            1..=64 => Some(if self.objects >> (self.len - 1) & 1 == 1 { &b'}' } else { &b']' }),
            _ => self.deeper.last(),
        }
    }

    fn pop(&mut self) {
        if self.len > 64 {
            self.deeper.pop();
        }
        self.len = self.len.saturating_sub(1);
    }
}

/// A pull reader over one JSON document: the caller reads each value with the method for
/// what it expects there, and the reader keeps its place and nesting depth.
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader { text, pos: 0, depth: 0 }
    }

    /// An error at the current position; out of line, as errors are rare.
    #[cold]
    #[inline(never)]
    pub fn error(&self, message: impl Into<String>) -> JsonError {
        JsonError { message: message.into(), offset: self.pos }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next significant byte, without taking it.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.pos).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &str) -> JsonResult<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    /// "expected X", naming what was found instead.
    #[cold]
    fn unexpected(&mut self, what: &str) -> JsonError {
        match self.peek() {
            None => self.error(format!("expected {what}, found the end of the record")),
            Some(b) if b.is_ascii_graphic() => self.error(format!("expected {what}, found `{}`", b as char)),
            Some(b) => self.error(format!("expected {what}, found byte 0x{b:02x}")),
        }
    }

    /// Only whitespace may follow the document.
    pub fn end(&mut self) -> JsonResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("unexpected text after the JSON document")),
        }
    }

    /// Takes `null` if it comes next.
    pub fn null(&mut self) -> JsonResult<bool> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// `true` or `false`.
    pub fn bool(&mut self) -> JsonResult<bool> {
        match self.peek() {
            Some(b't') => self.literal("true").map(|_| true),
            Some(b'f') => self.literal("false").map(|_| false),
            _ => Err(self.unexpected("true or false")),
        }
    }

    fn literal(&mut self, word: &str) -> JsonResult<()> {
        if self.bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(format!("invalid literal (expected `{word}`)")))
        }
    }

    /// A number's text, checked against JSON's grammar.
    pub fn number(&mut self) -> JsonResult<&'a str> {
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) {
            return Err(self.unexpected("a number"));
        }
        let bytes = self.bytes();
        let start = self.pos;
        let digits = |pos: &mut usize| {
            let from = *pos;
            while bytes.get(*pos).is_some_and(u8::is_ascii_digit) {
                *pos += 1;
            }
            *pos - from
        };
        let mut pos = start;
        if bytes[pos] == b'-' {
            pos += 1;
        }
        let leading_zero = bytes.get(pos) == Some(&b'0');
        let int_digits = digits(&mut pos);
        let mut valid = int_digits == 1 || (int_digits > 1 && !leading_zero);
        if valid && bytes.get(pos) == Some(&b'.') {
            pos += 1;
            valid = digits(&mut pos) > 0;
        }
        if valid && matches!(bytes.get(pos), Some(b'e' | b'E')) {
            pos += 1;
            if matches!(bytes.get(pos), Some(b'+' | b'-')) {
                pos += 1;
            }
            valid = digits(&mut pos) > 0;
        }
        if !valid {
            self.pos = pos;
            return Err(self.error("invalid number"));
        }
        self.pos = pos;
        Ok(&self.text[start..pos])
    }

    /// A string, borrowed from the document unless it holds escapes.
    #[inline(always)]
    pub fn string(&mut self) -> JsonResult<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string"));
        }
        self.pos += 1;
        let start = self.pos;
        let end = self.scan_plain(start);
        match self.bytes().get(end) {
            Some(b'"') => {
                self.pos = end + 1;
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            _ => {
                self.pos = end;
                self.escaped_string(start).map(Cow::Owned)
            }
        }
    }

    /// The end of the run of plain string bytes starting at `from`: eight bytes at a time,
    /// then one at a time.
    fn scan_plain(&self, from: usize) -> usize {
        let bytes = self.bytes();
        let mut pos = from;
        while let Some(chunk) = bytes.get(pos..pos + 8) {
            let Ok(chunk) = <[u8; 8]>::try_from(chunk) else { break };
            let stops = string_stops(u64::from_le_bytes(chunk));
            if stops != 0 {
                return pos + (stops.trailing_zeros() / 8) as usize;
            }
            pos += 8;
        }
        while let Some(&b) = bytes.get(pos) {
            if STRING_STOP[b as usize] {
                break;
            }
            pos += 1;
        }
        pos
    }

    /// The rest of a string that holds escapes; `self.pos` is at the first stop byte.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> JsonResult<String> {
        let mut out = String::from(&self.text[start..self.pos]);
        loop {
            match self.bytes().get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    out.push(self.escape()?);
                }
                Some(_) => return Err(self.error("control character in a string (it must be escaped)")),
            }
            let run = self.scan_plain(self.pos);
            out.push_str(&self.text[self.pos..run]);
            self.pos = run;
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> JsonResult<char> {
        let Some(&b) = self.bytes().get(self.pos) else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xD800..=0xDBFF => {
                        if !self.bytes()[self.pos..].starts_with(b"\\u") {
                            return Err(self.error("lone leading surrogate in a \\u escape"));
                        }
                        self.pos += 2;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error("invalid trailing surrogate in a \\u escape"));
                        }
                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in a \\u escape")),
                    _ => unit,
                };
                char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))?
            }
            _ => {
                self.pos -= 1;
                return Err(self.error("invalid escape in a string"));
            }
        })
    }

    fn hex4(&mut self) -> JsonResult<u32> {
        let digits =
            self.bytes().get(self.pos..self.pos + 4).ok_or_else(|| self.error("unterminated \\u escape"))?;
        let mut value = 0;
        for &d in digits {
            let v =
                (d as char).to_digit(16).ok_or_else(|| self.error("invalid hex digit in a \\u escape"))?;
            value = value * 16 + v;
        }
        self.pos += 4;
        Ok(value)
    }

    #[inline]
    fn enter(&mut self) -> JsonResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        Ok(())
    }

    /// Kept out of line, so the hot callers of `enter` carry no formatting code.
    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> JsonError {
        self.error(format!("nested more than {MAX_DEPTH} levels deep"))
    }

    /// An object: calls `field` with each name, positioned at its value, which `field` must
    /// read (or `skip`). Written out rather than shared with `array`: these two loops are
    /// the decoder's hottest, and a shared version through one more closure measured no faster.
    pub fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, Cow<'a, str>) -> JsonResult<()>,
    ) -> JsonResult<()> {
        self.expect(b'{', "an object")?;
        self.enter()?;
        if !self.eat(b'}') {
            loop {
                let name = self.string()?;
                self.expect(b':', "`:` after an object's field name")?;
                field(self, name)?;
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(b'}', after_element(b'}'))?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// An array: calls `element` positioned at each element, which it must read.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> JsonResult<()>) -> JsonResult<()> {
        self.expect(b'[', "an array")?;
        self.enter()?;
        if !self.eat(b']') {
            loop {
                element(self)?;
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(b']', after_element(b']'))?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Checks and passes over any value. It builds nothing, so it takes what the grammar
    /// allows even where a built value could not be: lone surrogate escapes, and nesting of
    /// any depth (it keeps its own stack of open brackets rather than recursing).
    pub fn skip(&mut self) -> JsonResult<()> {
        let mut open = OpenBrackets::default();
        loop {
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    if !self.eat(b'}') {
                        open.push(b'}');
                        self.skip_field_name()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if !self.eat(b']') {
                        open.push(b']');
                        continue;
                    }
                }
                Some(b'"') => self.skip_string()?,
                Some(b't' | b'f') => drop(self.bool()?),
                Some(b'n') => self.literal("null")?,
                Some(b'-' | b'0'..=b'9') => drop(self.number()?),
                _ => return Err(self.unexpected("a JSON value")),
            }
            // A value is complete: close what it completes, up to the next element.
            loop {
                let Some(&closer) = open.last() else { return Ok(()) };
                if self.eat(b',') {
                    if closer == b'}' {
                        self.skip_field_name()?;
                    }
                    break;
                }
                if !self.eat(closer) {
                    return Err(self.unexpected(after_element(closer)));
                }
                open.pop();
            }
        }
    }

    fn skip_field_name(&mut self) -> JsonResult<()> {
        self.skip_string()?;
        self.expect(b':', "`:` after an object's field name")
    }

    /// Checks and passes over a string without unescaping it.
    #[inline(always)]
    fn skip_string(&mut self) -> JsonResult<()> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string"));
        }
        self.pos += 1;
        loop {
            self.pos = self.scan_plain(self.pos);
            match self.bytes().get(self.pos) {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.bytes().get(self.pos) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                        Some(b'u') => {
                            self.pos += 1;
                            self.hex4()?;
                        }
                        None => return Err(self.error("unterminated string")),
                        Some(_) => return Err(self.error("invalid escape in a string")),
                    }
                }
                Some(_) => return Err(self.error("control character in a string (it must be escaped)")),
            }
        }
    }

    /// Checks and passes over any value, returning its text.
    pub fn raw(&mut self) -> JsonResult<&'a str> {
        self.raw_with(Reader::skip)
    }

    fn raw_with(&mut self, skip: impl FnOnce(&mut Self) -> JsonResult<()>) -> JsonResult<&'a str> {
        self.skip_whitespace();
        let start = self.pos;
        skip(self)?;
        Ok(&self.text[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of `text`, skipped; the error message if any.
    fn check(text: &str) -> Result<(), String> {
        let mut r = Reader::new(text);
        r.skip().and_then(|_| r.end()).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_json() {
        for ok in [
            r#"{}"#,
            r#"[]"#,
            r#" { "a" : [1, -0, 0.5, -1.5e+3, 2E-2, true, false, null, "x", {"b": []}] } "#,
            r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
            "\"caf\u{e9} \u{1f600}\"",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_what_json_does_not_allow() {
        for (bad, why) in [
            ("", "expected a JSON value, found the end"),
            ("{", "expected a string"),
            (r#"{"a":1,}"#, "expected a string"),
            (r#"{"a" 1}"#, "`:`"),
            (r#"[1 2]"#, "`,` or `]`"),
            (r#"01"#, "invalid number"),
            (r#"1."#, "invalid number"),
            (r#"-"#, "invalid number"),
            (r#"1e"#, "invalid number"),
            (r#"tru"#, "invalid literal"),
            (r#"nul"#, "invalid literal"),
            ("\"a\u{1}\"", "control character"),
            (r#""\x""#, "invalid escape"),
            (r#""\u12g4""#, "hex digit"),
            (r#""abc"#, "unterminated"),
            (r#"{} {}"#, "after the JSON document"),
            (r#"'a'"#, "found `'`"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn strings_unescape_and_borrow_when_they_can() {
        let mut r = Reader::new(r#"["plain", "a\"b\u00e9\ud83d\ude00c\n"]"#);
        let mut got = Vec::new();
        r.array(|r| {
            got.push(r.string()?);
            Ok(())
        })
        .unwrap();
        assert!(matches!(got[0], Cow::Borrowed("plain")));
        assert_eq!(got[1], "a\"b\u{e9}\u{1f600}c\n");
    }

    #[test]
    fn string_scan_stops_at_the_first_stop_byte_in_any_lane() {
        for len in 0..20 {
            for stop in ['"', '\\', '\u{1}', '\u{1f}'] {
                let body: String = "é-a~".chars().cycle().take(len).collect();
                let text = format!("{body}{stop}tail\"");
                let r = Reader::new(&text);
                assert_eq!(r.scan_plain(0), body.len(), "{text:?}");
            }
        }
        assert_eq!(string_stops(u64::from_le_bytes(*b" !#[]}\x7f\xff")), 0);
    }

    #[test]
    fn raw_returns_the_value_text() {
        let mut r = Reader::new(r#"{"x": {"y": [1, "}"]} , "z": 2}"#);
        let mut raw = "";
        r.object(|r, name| {
            if name == "x" {
                raw = r.raw()?;
                Ok(())
            } else {
                r.skip()
            }
        })
        .unwrap();
        assert_eq!(raw, r#"{"y": [1, "}"]}"#);
    }

    #[test]
    fn nesting_is_bounded_where_values_are_built_and_free_where_skipped() {
        fn nest(r: &mut Reader<'_>) -> JsonResult<()> {
            r.array(nest)
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(check(&deep), Ok(()));
        assert!(nest(&mut Reader::new(&deep)).unwrap_err().to_string().contains("nested more than 128"));
        let fine = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(nest(&mut Reader::new(&fine)), Ok(()));
        let unclosed = "[{\"a\":".repeat(5_000);
        assert!(check(&unclosed).unwrap_err().contains("expected a JSON value, found the end"));
    }

    #[test]
    fn skipping_takes_lone_surrogates_that_reading_refuses() {
        assert_eq!(check(r#"{"\udc00": ["\ud800", "a\ud83dz"]}"#), Ok(()));
        for (text, why) in [
            (r#""\ud800""#, "lone leading surrogate"),
            (r#""\ud800\u0041""#, "invalid trailing surrogate"),
            (r#""\udc00""#, "lone trailing surrogate"),
        ] {
            let err = Reader::new(text).string().unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(check(r#""\u12zz""#).unwrap_err().contains("hex digit"));
    }

    proptest::proptest! {
        /// Differential check against serde_json: text built from JSON's own characters
        /// (mostly invalid) is accepted by both or by neither. serde_json also refuses
        /// numbers beyond f64's range and lone surrogate escapes, which are valid JSON text
        /// (and which only skipping, not reading a string, accepts).
        #[test]
        fn accepts_exactly_what_serde_json_accepts(text in r#"[\[\]{}",: 0-9eE.+\-tfnrulasdDcC\\/u\x01é]{0,24}"#) {
            let ours = check(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            match (&ours, &theirs) {
                (Ok(()), Err(e)) => proptest::prop_assert!(
                    e.to_string().contains("out of range") || e.to_string().contains("surrogate"),
                    "{text:?}: {e}"
                ),
                (Err(e), Ok(_)) => proptest::prop_assert!(false, "{text:?} refused: {e}"),
                _ => {}
            }
        }

        /// Any document serde_json writes, this reader accepts, pretty or compact.
        #[test]
        fn accepts_what_serde_json_writes(value in json_value()) {
            proptest::prop_assert_eq!(check(&value.to_string()), Ok(()));
            proptest::prop_assert_eq!(check(&serde_json::to_string_pretty(&value).unwrap()), Ok(()));
        }

        /// Any string serde_json writes, this reader reads back equal.
        #[test]
        fn reads_strings_serde_json_writes(s in "\\PC{0,40}") {
            let text = serde_json::to_string(&s).unwrap();
            let mut r = Reader::new(&text);
            proptest::prop_assert_eq!(r.string().unwrap(), s.as_str());
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e300f64..1e300).prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn errors_say_where() {
        let err = Reader::new(r#"{"a":tru}"#).skip().unwrap_err();
        assert_eq!(err.offset, 5);
    }
}
