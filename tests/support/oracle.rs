//! The tests' own idea of values, written without the product's conversion code: numbers
//! normalised by hand, JSON parsed by hand, and change records spelled in the many ways a
//! producer may write the same thing (number forms, key order, white space, escapes).
//!
//! The product decides what a cell holds; these functions decide, independently, what it
//! must hold. Where both used the same function, a bug in it could never show.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use dynashift_core::value::{AttrValue, Item};
use dynashift_testkit::{Event, EventKindGen, Rng};

/// A decimal number as sign, significant digits (no leading or trailing zeros; empty for
/// zero) and the exponent of the last digit: equal values have equal parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Decimal {
    pub negative: bool,
    pub digits: String,
    pub exponent: i32,
}

impl Decimal {
    /// Reads `[+-]digits[.digits][(e|E)[+-]digits]` (either side of the point may be empty,
    /// not both); `None` for anything else.
    pub fn parse(text: &str) -> Option<Decimal> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{int}{frac}");
        if all.is_empty() || !all.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let significant = all.trim_start_matches('0');
        let digits = significant.trim_end_matches('0');
        if digits.is_empty() {
            return Some(Decimal { negative: false, digits: String::new(), exponent: 0 });
        }
        let exponent = exponent - frac.len() as i32 + (significant.len() - digits.len()) as i32;
        Some(Decimal { negative, digits: digits.to_string(), exponent })
    }

    /// The parts of a number the product holds, read from its text.
    pub fn of(n: &dynashift_core::number::Number) -> Decimal {
        let text = n.to_string();
        Decimal::parse(&text).unwrap_or_else(|| panic!("the product printed {text:?} for a number"))
    }

    /// Position of the most significant digit (0 for units, -1 for tenths).
    fn magnitude(&self) -> i32 {
        self.exponent + self.digits.len() as i32 - 1
    }

    /// The magnitude in plain notation, without sign.
    fn plain_unsigned(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let magnitude = self.magnitude();
        if self.exponent >= 0 {
            format!("{}{}", self.digits, "0".repeat(self.exponent as usize))
        } else if magnitude >= 0 {
            let (int, frac) = self.digits.split_at(magnitude as usize + 1);
            format!("{int}.{frac}")
        } else {
            format!("0.{}{}", "0".repeat((-magnitude - 1) as usize), self.digits)
        }
    }

    fn sign(&self) -> &'static str {
        if self.negative {
            "-"
        } else {
            ""
        }
    }

    /// The documented text form: plain notation while it is at most 48 characters of digits,
    /// `d.dddE±x` beyond.
    pub fn canonical(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let integer_digits = (self.magnitude() + 1).max(1);
        let scale = (-self.exponent).max(0);
        if integer_digits + scale <= 48 {
            return format!("{}{}", self.sign(), self.plain_unsigned());
        }
        self.scientific("E", true)
    }

    fn scientific(&self, e: &str, plus: bool) -> String {
        let magnitude = self.magnitude();
        let (first, rest) = self.digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        let sign = if magnitude < 0 {
            "-"
        } else if plus {
            "+"
        } else {
            ""
        };
        format!("{}{first}{point}{rest}{e}{sign}{}", self.sign(), magnitude.abs())
    }

    /// One of the many equal spellings of the number, chosen by `rng`.
    pub fn spell(&self, rng: &mut Rng) -> String {
        if self.digits.is_empty() {
            return ["0", "0.0", "-0", "0E+3", "000", ".0"][rng.below(6) as usize].into();
        }
        let plain = self.plain_unsigned();
        match rng.below(7) {
            0 if plain.len() < 60 => format!("{}{plain}", self.sign()),
            1 if plain.len() < 60 => {
                let padded = if plain.contains('.') { format!("{plain}00") } else { format!("{plain}.0") };
                format!("{}{padded}", self.sign())
            }
            2 if plain.len() < 60 => format!("{}00{plain}", if self.negative { "-" } else { "+" }),
            3 => self.scientific("e", rng.chance(50)),
            4 => format!("{}{}E{}", self.sign(), self.digits, self.exponent),
            5 => format!("{}{}0e{}", self.sign(), self.digits, self.exponent - 1),
            _ => self.canonical(),
        }
    }
}

/// A JSON value as the tests compare them: object keys sorted, numbers as exact decimals.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Json {
    Null,
    Bool(bool),
    Num(Decimal),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    /// Canonical text: sorted keys, numbers in their documented form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(d) => out.push_str(&d.canonical()),
            Json::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.render_into(out);
                }
                out.push(']');
            }
            Json::Obj(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    v.render_into(out);
                }
                out.push('}');
            }
        }
    }
}

/// Parses JSON text (numbers kept exact); `None` if it is not one JSON value.
pub fn parse_json(text: &str) -> Option<Json> {
    let mut p = JsonParser { s: text.as_bytes(), at: 0 };
    let v = p.value()?;
    p.space();
    (p.at == p.s.len()).then_some(v)
}

struct JsonParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn space(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.space();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Option<Json> {
        self.s[self.at..].starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            v
        })
    }

    fn value(&mut self) -> Option<Json> {
        self.space();
        match *self.s.get(self.at)? {
            b'n' => self.literal("null", Json::Null),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Some(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat(b']') {
                        return Some(Json::Arr(items));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut map = BTreeMap::new();
                if self.eat(b'}') {
                    return Some(Json::Obj(map));
                }
                loop {
                    self.space();
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value()?;
                    if map.insert(key, v).is_some() {
                        return None;
                    }
                    if self.eat(b'}') {
                        return Some(Json::Obj(map));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            _ => self.number(),
        }
    }

    /// A number as JSON spells it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.s.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        if self.s.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        let int_start = self.at;
        let int = digits(self);
        if int == 0 || (int > 1 && self.s[int_start] == b'0') {
            return None;
        }
        if self.s.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if self.s.get(self.at).is_some_and(|b| *b == b'e' || *b == b'E') {
            self.at += 1;
            if self.s.get(self.at).is_some_and(|b| *b == b'+' || *b == b'-') {
                self.at += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).ok()?;
        Decimal::parse(text).map(Json::Num)
    }

    fn string(&mut self) -> Option<String> {
        if self.s.get(self.at) != Some(&b'"') {
            return None;
        }
        self.at += 1;
        let mut units: Vec<u16> = Vec::new();
        let mut out = String::new();
        loop {
            let b = *self.s.get(self.at)?;
            if b != b'\\' && !units.is_empty() {
                out.push_str(&String::from_utf16(&units).ok()?);
                units.clear();
            }
            match b {
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                b'\\' => {
                    let escape = *self.s.get(self.at + 1)?;
                    self.at += 2;
                    let plain = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self.s.get(self.at..self.at + 4)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            units.push(u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                            self.at += 4;
                            continue;
                        }
                        _ => return None,
                    };
                    if !units.is_empty() {
                        out.push_str(&String::from_utf16(&units).ok()?);
                        units.clear();
                    }
                    out.push(plain);
                }
                // JSON strings hold no raw control characters.
                _ if b < 0x20 => return None,
                _ => {
                    let len = match b {
                        0..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    out.push_str(std::str::from_utf8(self.s.get(self.at..self.at + len)?).ok()?);
                    self.at += len;
                }
            }
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An attribute value as the documented plain JSON: maps as objects, lists as arrays, sets
/// as arrays sorted by their text, binary as base64, numbers exact.
pub fn plain_json(v: &AttrValue) -> Json {
    match v {
        AttrValue::S(s) => Json::Str(s.to_string()),
        AttrValue::N(n) => Json::Num(Decimal::of(n)),
        AttrValue::B(b) => Json::Str(base64(b)),
        AttrValue::Bool(b) => Json::Bool(*b),
        AttrValue::Null => Json::Null,
        AttrValue::M(m) => item_json(m),
        AttrValue::L(l) => Json::Arr(l.iter().map(plain_json).collect()),
        AttrValue::Ss(set) => {
            let mut texts: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            texts.sort();
            Json::Arr(texts.into_iter().map(Json::Str).collect())
        }
        AttrValue::Ns(set) => {
            let mut numbers: Vec<Decimal> = set.iter().map(Decimal::of).collect();
            numbers.sort_by_key(Decimal::canonical);
            Json::Arr(numbers.into_iter().map(Json::Num).collect())
        }
        AttrValue::Bs(set) => {
            let mut texts: Vec<String> = set.iter().map(|b| base64(b)).collect();
            texts.sort();
            Json::Arr(texts.into_iter().map(Json::Str).collect())
        }
    }
}

/// An item as one plain JSON object.
pub fn item_json(item: &Item) -> Json {
    Json::Obj(item.iter().map(|(k, v)| (k.to_string(), plain_json(v))).collect())
}

/// The item's key as the tests name rows: typed JSON of the key attributes, rendered
/// canonically (the product's `_ddb_key` text is parsed and rendered the same way).
pub fn key_name(keys: &Item) -> String {
    let typed = |v: &AttrValue| -> Json {
        let (tag, inner) = match v {
            AttrValue::S(s) => ("S", Json::Str(s.to_string())),
            AttrValue::N(n) => ("N", Json::Str(Decimal::of(n).canonical())),
            AttrValue::B(b) => ("B", Json::Str(base64(b))),
            other => panic!("a key attribute of type {}", other.type_name()),
        };
        Json::Obj([(tag.to_string(), inner)].into())
    };
    Json::Obj(keys.iter().map(|(k, v)| (k.to_string(), typed(v))).collect()).render()
}

/// A stored `_ddb_key` as `key_name` renders it; its numbers must be in their canonical
/// form, so one key never has two spellings.
pub fn stored_key_name(text: &str) -> String {
    let json = parse_json(text).unwrap_or_else(|| panic!("stored key {text:?} is not JSON"));
    let Json::Obj(attrs) = &json else { panic!("stored key {text:?} is not an object") };
    for typed in attrs.values() {
        if let Json::Obj(t) = typed {
            if let Some(Json::Str(n)) = t.get("N") {
                let canonical = Decimal::parse(n).map(|d| d.canonical());
                assert_eq!(canonical.as_deref(), Some(n.as_str()), "a number in stored key {text:?}");
            }
        }
    }
    json.render()
}

/// Writes records as a producer other than DynamoDB itself might: keys in any order, any
/// white space, numbers in any equal spelling, characters escaped or not.
pub struct RecordWriter<'a> {
    pub rng: &'a mut Rng,
}

impl RecordWriter<'_> {
    /// White space between tokens; never a line break, so a record stays one JSON line.
    fn space(&mut self, out: &mut String) {
        match self.rng.below(8) {
            0 => out.push(' '),
            1 => out.push_str("  "),
            2 => out.push('\t'),
            _ => {}
        }
    }

    fn string(&mut self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            let must = c == '"' || c == '\\' || (c as u32) < 0x20;
            if must || self.rng.chance(10) {
                match c {
                    '"' if self.rng.chance(50) => out.push_str("\\\""),
                    '\\' if self.rng.chance(50) => out.push_str("\\\\"),
                    '\n' if self.rng.chance(50) => out.push_str("\\n"),
                    '/' => out.push_str("\\/"),
                    _ => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            let _ = write!(out, "\\u{u:04X}");
                        }
                    }
                }
            } else {
                out.push(c);
            }
        }
        out.push('"');
    }

    /// `{k: v, …}` with the fields in a random order.
    fn object(&mut self, out: &mut String, fields: Vec<(String, String)>) {
        let mut fields = fields;
        for i in (1..fields.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            fields.swap(i, j);
        }
        out.push('{');
        for (i, (k, v)) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.space(out);
            self.string(out, &k);
            self.space(out);
            out.push(':');
            self.space(out);
            out.push_str(&v);
        }
        self.space(out);
        out.push('}');
    }

    fn array(&mut self, out: &mut String, items: Vec<String>) {
        out.push('[');
        for (i, v) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
                self.space(out);
            }
            out.push_str(&v);
        }
        out.push(']');
    }

    fn quoted(&mut self, s: &str) -> String {
        let mut out = String::new();
        self.string(&mut out, s);
        out
    }

    fn number(&mut self, n: &dynashift_core::number::Number) -> String {
        let spelled = Decimal::of(n).spell(self.rng);
        self.quoted(&spelled)
    }

    /// DynamoDB JSON of one value: `{"S": …}`, `{"N": "…"}`, …
    pub fn typed(&mut self, v: &AttrValue) -> String {
        let (tag, inner) = match v {
            AttrValue::S(s) => ("S", self.quoted(s)),
            AttrValue::N(n) => ("N", self.number(n)),
            AttrValue::B(b) => ("B", self.quoted(&base64(b))),
            AttrValue::Bool(b) => ("BOOL", b.to_string()),
            AttrValue::Null => ("NULL", "true".to_string()),
            AttrValue::M(m) => ("M", self.typed_item(m)),
            AttrValue::L(l) => {
                let items = l.iter().map(|v| self.typed(v)).collect();
                let mut out = String::new();
                self.array(&mut out, items);
                ("L", out)
            }
            AttrValue::Ss(set) => {
                let items = set.iter().map(|s| self.quoted(s)).collect();
                let mut out = String::new();
                self.array(&mut out, items);
                ("SS", out)
            }
            AttrValue::Ns(set) => {
                let items = set.iter().map(|n| self.number(n)).collect();
                let mut out = String::new();
                self.array(&mut out, items);
                ("NS", out)
            }
            AttrValue::Bs(set) => {
                let items = set.iter().map(|b| self.quoted(&base64(b))).collect();
                let mut out = String::new();
                self.array(&mut out, items);
                ("BS", out)
            }
        };
        let mut out = String::new();
        self.object(&mut out, vec![(tag.to_string(), inner)]);
        out
    }

    pub fn typed_item(&mut self, item: &Item) -> String {
        let fields = item.iter().map(|(k, v)| (k.to_string(), self.typed(v))).collect();
        let mut out = String::new();
        self.object(&mut out, fields);
        out
    }

    fn images(&mut self, event: &Event, fields: &mut Vec<(String, String)>) {
        if let Some(image) = &event.image {
            fields.push(("NewImage".into(), self.typed_item(image)));
        }
        if let Some(old) = &event.old_image {
            fields.push(("OldImage".into(), self.typed_item(old)));
        }
    }

    fn user_identity(&mut self, event: &Event) -> Option<String> {
        (event.kind == EventKindGen::Expire).then(|| {
            let mut out = String::new();
            let fields = vec![
                ("type".into(), self.quoted("Service")),
                ("principalId".into(), self.quoted("dynamodb.amazonaws.com")),
            ];
            self.object(&mut out, fields);
            out
        })
    }

    /// A Kinesis Data Streams for DynamoDB record of `event` (time in µs when
    /// `micros_precision`, else ms).
    pub fn kinesis_record(&mut self, event: &Event, micros_precision: bool, event_id: u64) -> String {
        let time = if micros_precision { event.micros } else { event.micros / 1000 };
        let mut inner = vec![
            ("ApproximateCreationDateTime".to_string(), time.to_string()),
            ("Keys".into(), self.typed_item(&event.keys)),
            ("SizeBytes".into(), "100".into()),
        ];
        if micros_precision {
            inner.push(("ApproximateCreationDateTimePrecision".into(), self.quoted("MICROSECOND")));
        }
        self.images(event, &mut inner);
        let mut dynamodb = String::new();
        self.object(&mut dynamodb, inner);
        let mut fields = vec![
            ("awsRegion".to_string(), self.quoted("eu-west-1")),
            ("eventID".into(), self.quoted(&format!("{event_id:016x}-0000-4000-8000-{event_id:012x}"))),
            ("eventName".into(), self.quoted(event_name(event.kind))),
            ("userIdentity".into(), self.user_identity(event).unwrap_or_else(|| "null".into())),
            ("recordFormat".into(), self.quoted("application/json")),
            ("tableName".into(), self.quoted(&event.table)),
            ("dynamodb".into(), dynamodb),
            ("eventSource".into(), self.quoted("aws:dynamodb")),
        ];
        if self.rng.chance(20) {
            // Fields a reader must ignore.
            fields.push(("extra".into(), "{\"nested\":[1,2,{\"S\":\"x\"}]}".into()));
        }
        let mut out = String::new();
        self.object(&mut out, fields);
        out
    }

    /// A DynamoDB Streams record of `event` as a relaying function forwards it: no
    /// `tableName`, the table in `eventSourceARN`, whole seconds, order in `SequenceNumber`.
    pub fn streams_record(&mut self, event: &Event, sequence: u128) -> String {
        let mut inner = vec![
            ("ApproximateCreationDateTime".to_string(), (event.micros / 1_000_000).to_string()),
            ("Keys".into(), self.typed_item(&event.keys)),
            ("SequenceNumber".into(), self.quoted(&sequence.to_string())),
            ("SizeBytes".into(), "100".into()),
            ("StreamViewType".into(), self.quoted("NEW_AND_OLD_IMAGES")),
        ];
        self.images(event, &mut inner);
        let mut dynamodb = String::new();
        self.object(&mut dynamodb, inner);
        let arn = format!(
            "arn:aws:dynamodb:eu-west-1:123456789012:table/{}/stream/2026-11-01T00:00:00.000",
            event.table
        );
        let mut fields = vec![
            ("eventID".to_string(), self.quoted(&format!("{sequence:032x}"))),
            ("eventName".into(), self.quoted(event_name(event.kind))),
            ("eventVersion".into(), self.quoted("1.1")),
            ("eventSource".into(), self.quoted("aws:dynamodb")),
            ("awsRegion".into(), self.quoted("eu-west-1")),
            ("eventSourceARN".into(), self.quoted(&arn)),
            ("dynamodb".into(), dynamodb),
        ];
        if let Some(identity) = self.user_identity(event) {
            fields.push(("userIdentity".into(), identity));
        }
        let mut out = String::new();
        self.object(&mut out, fields);
        out
    }
}

/// The record's `eventName`: a TTL expiry is a REMOVE.
pub fn event_name(kind: EventKindGen) -> &'static str {
    match kind {
        EventKindGen::Insert => "INSERT",
        EventKindGen::Modify => "MODIFY",
        EventKindGen::Remove | EventKindGen::Expire => "REMOVE",
    }
}

/// What `_ddb_event` says for a change of this kind.
pub fn stored_event(kind: EventKindGen) -> &'static str {
    match kind {
        EventKindGen::Insert => "INSERT",
        EventKindGen::Modify => "MODIFY",
        EventKindGen::Remove => "REMOVE",
        EventKindGen::Expire => "EXPIRE",
    }
}

/// Checks of the oracle itself, called by the model test: an oracle that is wrong proves
/// nothing.
pub fn oracle_checks() {
    let d = |s: &str| Decimal::parse(s).unwrap_or_else(|| panic!("{s}"));
    for (text, canonical) in [
        ("19.90", "19.9"),
        ("1E+2", "100"),
        ("-0.00", "0"),
        ("007.250", "7.25"),
        (".5", "0.5"),
        ("+12.5e3", "12500"),
        ("1.5E+100", "1.5E+100"),
        ("-1E-130", "-1E-130"),
        ("0.000000000001234", "0.000000000001234"),
        ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
        (
            "123456789012345678901234567890123456789012345678",
            "123456789012345678901234567890123456789012345678",
        ),
        (
            "1234567890123456789012345678901234567890123456789",
            "1.234567890123456789012345678901234567890123456789E+48",
        ),
    ] {
        assert_eq!(d(text).canonical(), canonical, "{text}");
    }
    for bad in ["", "-", "1e", "abc", "1.2.3", "0x1", "--1"] {
        assert!(Decimal::parse(bad).is_none(), "{bad}");
    }
    let mut rng = Rng::new(3);
    for text in ["0", "19.9", "-1E-130", "1.5E+100", "123456789", "-0.0001"] {
        for _ in 0..20 {
            let spelled = d(text).spell(&mut rng);
            assert_eq!(d(&spelled), d(text), "{spelled} spells {text}");
        }
    }
    let j = parse_json(" {\"b\": [1, 2.50, \"\\u00e9\\uD83D\\uDE00\"], \"a\" :null}").expect("json");
    assert_eq!(j.render(), "{\"a\":null,\"b\":[1,2.5,\"é😀\"]}");
    for bad in ["{\"a\":1,}", "[1] x", "+1", ".5", "1.", "007", "\"a\\u+123\"", "\"tab\there\"", "[1,]"] {
        assert!(parse_json(bad).is_none(), "{bad}");
    }
    assert_eq!(parse_json("-0.5e+3"), Some(Json::Num(d("-500"))));
}
