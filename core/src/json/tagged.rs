//! DynamoDB's typed values as the reader meets them: `{"S":"…"}`, `{"M":{…}}` and the rest,
//! one field whose name is a type tag. Written compactly, as DynamoDB writes them, they are
//! recognised from their first bytes and read without the general object walk; anything else
//! is read the general way, with the same results and errors.

use super::{after_element, JsonResult, Reader, MAX_DEPTH};

/// DynamoDB's type tags, the one field name of each typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeTag {
    /// String (`S`).
    S,
    /// Number (`N`).
    N,
    /// Binary, as base64 text (`B`).
    B,
    /// Boolean (`BOOL`).
    Bool,
    /// Null (`NULL`).
    Null,
    /// Map (`M`).
    M,
    /// List (`L`).
    L,
    /// String set (`SS`).
    Ss,
    /// Number set (`NS`).
    Ns,
    /// Binary set (`BS`).
    Bs,
}

impl TypeTag {
    /// The tag spelled `name` (`"S"`, `"BOOL"`, …); `None` for any other field name.
    pub fn from_name(name: &str) -> Option<TypeTag> {
        Some(match name {
            "S" => TypeTag::S,
            "N" => TypeTag::N,
            "B" => TypeTag::B,
            "BOOL" => TypeTag::Bool,
            "NULL" => TypeTag::Null,
            "M" => TypeTag::M,
            "L" => TypeTag::L,
            "SS" => TypeTag::Ss,
            "NS" => TypeTag::Ns,
            "BS" => TypeTag::Bs,
            _ => return None,
        })
    }
}

/// `{"TAG":` for each tag, most frequent first: the tag, the opening's length, and the mask
/// and value of the opening as the low bytes of a little-endian word.
const TAGGED_OPENINGS: [(TypeTag, usize, u64, u64); 10] = [
    tagged_opening(TypeTag::S, b"{\"S\":"),
    tagged_opening(TypeTag::N, b"{\"N\":"),
    tagged_opening(TypeTag::M, b"{\"M\":"),
    tagged_opening(TypeTag::L, b"{\"L\":"),
    tagged_opening(TypeTag::Bool, b"{\"BOOL\":"),
    tagged_opening(TypeTag::B, b"{\"B\":"),
    tagged_opening(TypeTag::Ss, b"{\"SS\":"),
    tagged_opening(TypeTag::Ns, b"{\"NS\":"),
    tagged_opening(TypeTag::Null, b"{\"NULL\":"),
    tagged_opening(TypeTag::Bs, b"{\"BS\":"),
];

const fn tagged_opening(tag: TypeTag, opening: &[u8]) -> (TypeTag, usize, u64, u64) {
    let mut value = 0u64;
    let mut i = 0;
    while i < opening.len() {
        value |= (opening[i] as u64) << (8 * i);
        i += 1;
    }
    let mask = if opening.len() == 8 { u64::MAX } else { (1u64 << (8 * opening.len())) - 1 };
    (tag, opening.len(), mask, value)
}

impl<'a> Reader<'a> {
    /// Opens a one-field object written compactly, `{"TAG":` with nothing between the
    /// tokens, and returns the tag; `None`, taking nothing, for anything else. DynamoDB writes
    /// every typed value this way, and reading it here skips the general object walk. The
    /// object counts as a nesting level, as `object` would count it, until `close_tagged`.
    #[inline(always)]
    pub fn open_tagged(&mut self) -> JsonResult<Option<TypeTag>> {
        let Some(head) = self.bytes().get(self.pos..self.pos + 8) else { return Ok(None) };
        let Ok(head) = <[u8; 8]>::try_from(head) else { return Ok(None) };
        // The opening bytes as one word, compared with each spelling at once.
        let word = u64::from_le_bytes(head);
        let Some(&(tag, len, _, _)) =
            TAGGED_OPENINGS.iter().find(|(_, _, mask, opening)| word & mask == *opening)
        else {
            return Ok(None);
        };
        self.pos += 1;
        self.enter()?;
        self.pos += len - 1;
        Ok(Some(tag))
    }

    /// Closes what `open_tagged` opened once its one field's value is read, going on from
    /// where the value ended (never reading it again, which nested values would repeat at
    /// every level): `}` must follow, after any whitespace. A second field is the error
    /// `second_field`, reported where `object` would report it.
    #[inline(always)]
    pub fn close_tagged(&mut self, second_field: &str) -> JsonResult<()> {
        if self.close_compact() {
            return Ok(());
        }
        self.close_tagged_spaced(second_field)
    }

    /// Takes the `}` that closes a compact typed value, if it follows at once.
    #[inline(always)]
    fn close_compact(&mut self) -> bool {
        let compact = self.bytes().get(self.pos) == Some(&b'}');
        if compact {
            self.pos += 1;
            self.depth -= 1;
        }
        compact
    }

    #[cold]
    #[inline(never)]
    fn close_tagged_spaced(&mut self, second_field: &str) -> JsonResult<()> {
        if self.eat(b',') {
            self.string()?;
            self.expect(b':', "`:` after an object's field name")?;
            return Err(self.error(second_field));
        }
        self.expect(b'}', after_element(b'}'))?;
        self.depth -= 1;
        Ok(())
    }

    /// `close_tagged` for a value being skipped, where further fields are checked and
    /// passed over as `skip` would.
    #[inline(always)]
    fn close_tagged_skipping(&mut self) -> JsonResult<()> {
        if self.close_compact() {
            return Ok(());
        }
        self.close_tagged_skipping_spaced()
    }

    #[cold]
    #[inline(never)]
    fn close_tagged_skipping_spaced(&mut self) -> JsonResult<()> {
        while self.eat(b',') {
            self.skip_field_name()?;
            self.skip()?;
        }
        self.expect(b'}', after_element(b'}'))?;
        self.depth -= 1;
        Ok(())
    }

    /// `skip` for an object whose values are mostly DynamoDB's compact typed values (an
    /// image): `{"S":"…"}` and the like are passed over directly, anything else by `skip`.
    /// It accepts what `skip` accepts and fails where and as `skip` fails.
    pub fn skip_typed_object(&mut self) -> JsonResult<()> {
        // Near the nesting limit, `skip` (which has none) takes over.
        if self.peek() != Some(b'{') || self.depth + 2 > MAX_DEPTH {
            return self.skip();
        }
        self.skip_typed_elements(b'}')
    }

    /// The elements of the object or array (a list, a set) that `close` ends, the reader at
    /// its opening bracket: each by `skip_typed_value`, which passes strings too.
    fn skip_typed_elements(&mut self, close: u8) -> JsonResult<()> {
        self.pos += 1;
        self.depth += 1;
        if !self.eat(close) {
            loop {
                if close == b'}' {
                    self.skip_field_name()?;
                }
                self.skip_typed_value()?;
                if !self.eat(b',') {
                    break;
                }
            }
            self.expect(close, after_element(close))?;
        }
        self.depth -= 1;
        Ok(())
    }

    fn skip_typed_value(&mut self) -> JsonResult<()> {
        self.skip_whitespace();
        let opened_at = self.pos;
        if self.bytes().get(opened_at) == Some(&b'"') {
            return self.skip_string();
        }
        if self.depth + 2 <= MAX_DEPTH {
            if let Some(tag) = self.open_tagged()? {
                let next = self.bytes().get(self.pos).copied();
                let passed = match (tag, next) {
                    (TypeTag::S | TypeTag::N | TypeTag::B, Some(b'"')) => self.skip_string().map(|_| true)?,
                    (TypeTag::Bool | TypeTag::Null, Some(b't' | b'f')) => self.bool().map(|_| true)?,
                    (TypeTag::M, Some(b'{')) => self.skip_typed_object().map(|_| true)?,
                    (TypeTag::L | TypeTag::Ss | TypeTag::Ns | TypeTag::Bs, Some(b'[')) => {
                        self.skip_typed_elements(b']').map(|_| true)?
                    }
                    _ => false,
                };
                if passed {
                    return self.close_tagged_skipping();
                }
                // A value of another shape: nothing of it is read yet, so `skip` takes it
                // from the start.
                self.depth -= 1;
                self.pos = opened_at;
            }
        }
        self.skip()
    }

    /// `raw`, passing over the value with `skip_typed_object`.
    pub fn raw_typed_object(&mut self) -> JsonResult<&'a str> {
        self.raw_with(Reader::skip_typed_object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Skipping an image by its typed values and skipping it as plain JSON end in the
        /// same place with the same result, on text near DynamoDB's spelling: spaces, commas
        /// out of place, wrong value shapes, nested maps and lists.
        #[test]
        fn typed_skipping_is_skipping(text in r#"(\{("[a-z]{0,2}":\{"(S|N|B|M|L|BOOL|NULL|SS|x)": ?("[a-z\\"]{0,3}"|[0-9\[\]{}]{0,3}|true|f|\{"q":\{"S":"x"\}\}|\[("a",?|\{"S":"b"\},?|1,?){0,3}\]?)[ ,]?\}[,]?){0,4}\}?){1,2}"#) {
            let skipped = |typed: bool| {
                let mut r = Reader::new(&text);
                let result = if typed { r.skip_typed_object() } else { r.skip() };
                (result.map_err(|e| e.to_string()), r.pos)
            };
            proptest::prop_assert_eq!(skipped(true), skipped(false), "{:?}", text);
        }
    }
}
