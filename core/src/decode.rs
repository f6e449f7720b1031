//! Decoding: one raw record (a JSON document) into a `Change`, or a reason it cannot be.
//!
//! Three envelopes are recognised per record: Kinesis Data Streams for DynamoDB (has
//! `tableName`), DynamoDB Streams (has `dynamodb.SequenceNumber`; the table comes from
//! `tableName`, `eventSourceARN` or the source's configured table) and DynamoDB export lines
//! (`{"Item": …}`; table and key names come from the configuration).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::change::{Change, EventIds, EventKind, Op, Position, Version, SEQUENCE_WIDTH};
use crate::held::{HeldChange, Packed};
use crate::json::{JsonResult, Reader};
use crate::pack_json::{read_packed_bytes_holding, read_packed_item, PackScratch};
use crate::packed;
use crate::packed::PackedItem;
use crate::typed_json::{read_item, read_whole, Scratch};
use crate::value::{key_text, write_key_text, AttrValue, Item, Text};

/// What the decoder needs to know beyond the record itself.
#[derive(Debug, Clone, Default)]
pub struct DecodeContext {
    /// Table for records that name none (export lines, relayed Streams records).
    pub default_table: Option<String>,
    /// Key attribute names per table, needed for export lines (they carry only the item).
    pub key_attributes: HashMap<String, Vec<String>>,
    /// The creation time export lines are given (µs since the epoch): a backfill's export
    /// time or scan start; 0 (older than any change) when unset.
    pub load_version: Option<i64>,
}

/// Why a record was rejected. The message is shown to users and stored with the raw record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is not UTF-8; holds the offset of the first invalid byte.
    #[error("record is not valid UTF-8 (byte {0})")]
    InvalidUtf8(usize),
    /// The record is not valid JSON or a field has the wrong shape; holds the reader's message.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// A stream record has no `eventName`.
    #[error("record has no `eventName` (expected INSERT, MODIFY or REMOVE)")]
    MissingEventName,
    /// `eventName` is not INSERT, MODIFY or REMOVE; holds it, cut to 64 characters.
    #[error("unknown eventName `{0}` (expected INSERT, MODIFY or REMOVE)")]
    UnknownEventName(String),
    /// Neither the record nor the configuration names its table.
    #[error(
        "record names no table: it has no `tableName` or `eventSourceARN`, and the source sets no `table`"
    )]
    MissingTable,
    /// A stream record lacks its `dynamodb` section.
    #[error("record has no `dynamodb` section")]
    MissingStreamRecord,
    /// The record has no keys, or an empty `Keys` map.
    #[error("record has no `dynamodb.Keys`")]
    MissingKeys,
    /// A key attribute is not S, N or B: its name and its type.
    #[error("key attribute `{0}` has type {1}; DynamoDB keys are S, N or B")]
    BadKeyType(String, &'static str),
    /// An INSERT or MODIFY (named in the error) carries no new image, as from a KEYS_ONLY stream.
    #[error("{0} record has no `dynamodb.NewImage` (is the stream view type KEYS_ONLY?)")]
    MissingNewImage(&'static str),
    /// `ApproximateCreationDateTime` is absent or not a usable time.
    #[error("record has no usable `ApproximateCreationDateTime`")]
    MissingTime,
    /// The sequence number has more than `SEQUENCE_WIDTH` significant digits; holds its start.
    #[error("sequence number has more than {SEQUENCE_WIDTH} digits, so it cannot be ordered: {0}…")]
    SequenceTooLong(String),
    /// An export line's table (named) has no key attributes configured.
    #[error("export line for table `{0}` cannot be keyed: set `keys` for it in the configuration")]
    UnknownKeys(String),
    /// An export line lacks one of its table's configured key attributes.
    #[error("export line lacks key attribute `{0}`")]
    MissingKeyAttribute(String),
}

/// The fields of a record that decoding reads; everything else is checked and skipped.
/// Strings are borrowed from the record when they hold no escapes (they never do in practice).
#[derive(Default)]
struct Envelope<'a> {
    event_id: Option<Cow<'a, str>>,
    event_name: Option<Cow<'a, str>>,
    table_name: Option<Cow<'a, str>>,
    event_source_arn: Option<Cow<'a, str>>,
    principal_id: Option<Cow<'a, str>>,
    dynamodb: Option<StreamRecord<'a>>,
    /// The record is an export line: its `Item`, packed, waits in the scratch.
    export_line: bool,
}

#[derive(Default)]
struct StreamRecord<'a> {
    /// `ApproximateCreationDateTime`'s number text.
    creation_time: Option<&'a str>,
    creation_time_precision: Option<Cow<'a, str>>,
    keys: Option<Item>,
    /// Whether the record has a new image (packed in `Scratches::new_image`), and whether it
    /// was seen to hold every key attribute.
    new_image: Option<bool>,
    /// Kept as checked raw JSON: only deletes need it, so most records never build it.
    old_image: Option<&'a str>,
    sequence_number: Option<Cow<'a, str>>,
}

/// Fields seen so far in one object: a field given twice is an error, not a silent choice.
/// Each object reads at most six known fields, so they fit in place without allocating.
#[derive(Default)]
struct Seen {
    fields: [&'static str; 8],
    len: usize,
}

impl Seen {
    /// Reads `field`'s value with `read` (`None` for `null`), once per object.
    fn read<'a, T>(
        &mut self,
        r: &mut Reader<'a>,
        field: &'static str,
        read: impl FnOnce(&mut Reader<'a>) -> JsonResult<T>,
    ) -> JsonResult<Option<T>> {
        if self.fields[..self.len].contains(&field) {
            return Err(r.error(format!("duplicate field `{field}`")));
        }
        self.fields[self.len] = field;
        self.len += 1;
        if r.null()? {
            return Ok(None);
        }
        read(r).map(Some)
    }
}

/// Buffers reused from record to record, keeping their capacity; each is written afresh
/// before a record reads it.
#[derive(Default)]
struct Scratches {
    tree: Scratch,
    packed: PackScratch,
    key_text: String,
    /// The record's packed new image.
    new_image: Vec<u8>,
    /// The record's packed keys.
    keys: Vec<u8>,
    /// An export line's packed item.
    item: Vec<u8>,
}

fn read_envelope<'a>(r: &mut Reader<'a>, scratch: &mut Scratches) -> JsonResult<Envelope<'a>> {
    let mut env = Envelope::default();
    let mut seen = Seen::default();
    r.object(|r, name| {
        match name.as_ref() {
            "eventID" => env.event_id = seen.read(r, "eventID", Reader::string)?,
            "eventName" => env.event_name = seen.read(r, "eventName", Reader::string)?,
            "tableName" => env.table_name = seen.read(r, "tableName", Reader::string)?,
            "eventSourceARN" => env.event_source_arn = seen.read(r, "eventSourceARN", Reader::string)?,
            "userIdentity" => env.principal_id = seen.read(r, "userIdentity", read_principal)?.flatten(),
            "dynamodb" => env.dynamodb = seen.read(r, "dynamodb", |r| read_stream_record(r, scratch))?,
            "Item" => {
                let (packed, item) = (&mut scratch.packed, &mut scratch.item);
                env.export_line =
                    seen.read(r, "Item", |r| read_packed_bytes_holding(r, packed, [], item))?.is_some();
            }
            _ => r.skip()?,
        }
        Ok(())
    })?;
    r.end()?;
    Ok(env)
}

fn read_principal<'a>(r: &mut Reader<'a>) -> JsonResult<Option<Cow<'a, str>>> {
    let mut principal = None;
    let mut seen = Seen::default();
    r.object(|r, name| {
        match name.as_ref() {
            "principalId" => principal = seen.read(r, "principalId", Reader::string)?,
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(principal)
}

fn read_stream_record<'a>(r: &mut Reader<'a>, scratch: &mut Scratches) -> JsonResult<StreamRecord<'a>> {
    let mut rec = StreamRecord::default();
    let mut seen = Seen::default();
    r.object(|r, name| {
        match name.as_ref() {
            "ApproximateCreationDateTime" => {
                rec.creation_time = seen.read(r, "ApproximateCreationDateTime", Reader::number)?
            }
            "ApproximateCreationDateTimePrecision" => {
                rec.creation_time_precision =
                    seen.read(r, "ApproximateCreationDateTimePrecision", Reader::string)?
            }
            "Keys" => rec.keys = seen.read(r, "Keys", |r| read_item(r, &mut scratch.tree))?,
            "NewImage" => {
                // The keys usually come first: then whether the image holds them is checked
                // as it is read. The packed image waits in the scratch for the change.
                let names = rec.keys.iter().flat_map(|k| k.keys().map(|name| name.as_str()));
                let (packed, image) = (&mut scratch.packed, &mut scratch.new_image);
                rec.new_image = seen
                    .read(r, "NewImage", |r| read_packed_bytes_holding(r, packed, names, image))?
                    .map(|holds| holds && rec.keys.is_some());
            }
            "OldImage" => rec.old_image = seen.read(r, "OldImage", Reader::raw_typed_object)?,
            "SequenceNumber" => rec.sequence_number = seen.read(r, "SequenceNumber", Reader::string)?,
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(rec)
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratches> = std::cell::RefCell::new(Scratches::default());
}

/// The principal DynamoDB's TTL process deletes as.
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// One record as a `Change`.
pub fn decode(raw: &[u8], position: Position, ctx: &DecodeContext) -> Result<Change, DecodeError> {
    let Packed { table, key_text, held } = decode_packed(raw, position, ctx)?;
    Ok(held.unpack_or_panic(&table, key_text))
}

/// One record as a batch holds it: its images are read straight into the packed form, so
/// no tree is built for a change that a later change of its key will replace.
pub fn decode_packed(raw: &[u8], position: Position, ctx: &DecodeContext) -> Result<Packed, DecodeError> {
    // One UTF-8 check of the whole record (several GB/s); after it, every slice the reader
    // cuts at an ASCII delimiter is valid text.
    let text = std::str::from_utf8(raw).map_err(|bad| DecodeError::InvalidUtf8(bad.valid_up_to()))?;
    let env = SCRATCH
        .with_borrow_mut(|scratch| read_envelope(&mut Reader::new(text), scratch))
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if env.export_line {
        return decode_export_line(env.table_name.map(Cow::into_owned), position, ctx);
    }
    let event_name = env.event_name.ok_or(DecodeError::MissingEventName)?;
    let op = Op::parse(&event_name)
        .ok_or_else(|| DecodeError::UnknownEventName(event_name.chars().take(64).collect()))?;
    let table: Text = match env.table_name {
        Some(name) => name.as_ref().into(),
        None => env
            .event_source_arn
            .as_deref()
            .and_then(table_from_arn)
            .or_else(|| ctx.default_table.clone())
            .ok_or(DecodeError::MissingTable)?
            .into(),
    };
    let rec = env.dynamodb.ok_or(DecodeError::MissingStreamRecord)?;
    let keys = rec.keys.ok_or(DecodeError::MissingKeys)?;
    check_keys(&keys)?;
    let micros = creation_micros(rec.creation_time, rec.creation_time_precision.as_deref())
        .ok_or(DecodeError::MissingTime)?;
    // A DynamoDB Streams record orders by its own sequence number and is never re-delivered.
    // A Kinesis record orders by its place in the shard, and may be delivered again later
    // in it: its `eventID` recognises the re-delivery.
    let sequence = rec.sequence_number.as_deref().unwrap_or(&position.sequence);
    if sequence.trim_start_matches('0').len() > SEQUENCE_WIDTH {
        return Err(DecodeError::SequenceTooLong(sequence.chars().take(SEQUENCE_WIDTH).collect()));
    }
    let (version, ids) = match rec.sequence_number.as_deref() {
        Some(sequence) => (Version::new(micros, Some(sequence)), EventIds::default()),
        None => (Version::new(micros, Some(&position.sequence)), EventIds::of(env.event_id.as_deref())),
    };
    let ttl = env.principal_id.is_some_and(|p| p == TTL_PRINCIPAL);
    let (event, new_image) = match op {
        Op::Insert | Op::Modify => {
            let label = if op == Op::Insert { "INSERT" } else { "MODIFY" };
            let holds_keys = rec.new_image.ok_or(DecodeError::MissingNewImage(label))?;
            if !holds_keys {
                SCRATCH.with_borrow_mut(|scratch| complete_with_keys(&mut scratch.new_image, &keys))?;
            }
            (if op == Op::Insert { EventKind::Insert } else { EventKind::Modify }, true)
        }
        Op::Remove => (if ttl { EventKind::Expire } else { EventKind::Remove }, false),
    };
    let old_image = match rec.old_image {
        Some(raw) if event.is_delete() => Some(
            SCRATCH
                .with_borrow_mut(|scratch| read_whole(raw, &mut scratch.packed, read_packed_item))
                .map_err(|e| DecodeError::Malformed(format!("OldImage: {e}")))?,
        ),
        _ => None,
    };
    // The packed keys and the key text are built in reused buffers and copied once, at their
    // exact size (the reducer keeps the text as a `Box<str>`).
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.keys.clear();
        packed::write_item(&mut scratch.keys, &keys);
        scratch.key_text.clear();
        write_key_text(&mut scratch.key_text, &keys);
        let new_image = new_image.then_some(scratch.new_image.as_slice());
        let old_image = old_image.as_ref().map(PackedItem::as_bytes);
        let held = HeldChange::new(&scratch.keys, new_image, old_image, event, version, position, ids);
        Ok(Packed { table, key_text: scratch.key_text.as_str().to_owned(), held })
    })
}

/// The packed `image` with any key attribute it lacks taken from `keys` (DynamoDB always
/// sends them in both; a record that does not is completed rather than refused).
fn complete_with_keys(image: &mut Vec<u8>, keys: &Item) -> Result<(), DecodeError> {
    if keys.keys().all(|k| packed::contains_name(image, k).unwrap_or(false)) {
        return Ok(());
    }
    let mut item = packed::unpack(image).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    for (k, v) in keys {
        if !item.contains_key(k) {
            item.insert(k.clone(), v.clone());
        }
    }
    image.clear();
    packed::write_item(image, &item);
    Ok(())
}

/// An export line, its item read straight into the packed form (in the scratch): only its
/// key attributes are unpacked, to make its keys.
fn decode_export_line(
    table: Option<String>,
    position: Position,
    ctx: &DecodeContext,
) -> Result<Packed, DecodeError> {
    let table = table.or_else(|| ctx.default_table.clone()).ok_or(DecodeError::MissingTable)?;
    let names = ctx.key_attributes.get(&table).ok_or_else(|| DecodeError::UnknownKeys(table.clone()))?;
    SCRATCH.with_borrow_mut(|scratch| {
        let mut keys = Item::new();
        for name in names {
            let v = packed::get(&scratch.item, name)
                // The bytes were packed just now from a parsed line: a failure is this
                // program's, not the line's (the line is kept as a reject all the same).
                .map_err(|e| {
                    DecodeError::Malformed(format!("a bug in packing export lines (please report it): {e}"))
                })?
                .ok_or_else(|| DecodeError::MissingKeyAttribute(name.clone()))?;
            keys.insert(name.as_str().into(), v);
        }
        check_keys(&keys)?;
        scratch.keys.clear();
        packed::write_item(&mut scratch.keys, &keys);
        let held = HeldChange::new(
            &scratch.keys,
            Some(&scratch.item),
            None,
            EventKind::Load,
            Version::new(ctx.load_version.unwrap_or(0), None),
            position,
            EventIds::default(),
        );
        Ok(Packed { table: table.into(), key_text: key_text(&keys), held })
    })
}

fn check_keys(keys: &Item) -> Result<(), DecodeError> {
    if keys.is_empty() {
        return Err(DecodeError::MissingKeys);
    }
    for (name, v) in keys {
        if !matches!(v, AttrValue::S(_) | AttrValue::N(_) | AttrValue::B(_)) {
            return Err(DecodeError::BadKeyType(name.chars().take(64).collect(), v.type_name()));
        }
    }
    Ok(())
}

/// `arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL` → `NAME`.
pub fn table_from_arn(arn: &str) -> Option<String> {
    let rest = arn.split_once(":table/")?.1;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// `ApproximateCreationDateTime` (JSON number text) in microseconds. Values flagged
/// MICROSECOND or above 1e14 are µs already; values of 1e11 and above are ms (Kinesis for
/// DynamoDB); smaller values are seconds (DynamoDB Streams).
pub fn creation_micros(value: Option<&str>, precision: Option<&str>) -> Option<i64> {
    let text = value?;
    let micro = precision == Some("MICROSECOND");
    if let Ok(i) = text.parse::<i64>() {
        if micro || i > 100_000_000_000_000 {
            return Some(i);
        }
        if i >= 100_000_000_000 {
            return i.checked_mul(1_000);
        }
        return i.checked_mul(1_000_000);
    }
    let v: f64 = text.parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let micros = if micro || v > 1e14 {
        v
    } else if v >= 1e11 {
        v * 1e3
    } else {
        v * 1e6
    };
    (micros < 9.0e18).then_some(micros.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos() -> Position {
        Position::new("f", "1")
    }

    fn dec(s: &str) -> Result<Change, DecodeError> {
        decode(s.as_bytes(), pos(), &DecodeContext::default())
    }

    const KINESIS: &str = r#"{"awsRegion":"eu-west-1","eventID":"7d0c","eventName":"MODIFY","userIdentity":null,"recordFormat":"application/json","tableName":"Invoices","dynamodb":{"ApproximateCreationDateTime":1764000123456789,"Keys":{"accountId":{"S":"acc-42"},"invoiceNo":{"N":"1007"}},"NewImage":{"accountId":{"S":"acc-42"},"invoiceNo":{"N":"1007"},"total":{"N":"19.90"},"paid":{"BOOL":true}},"OldImage":{"accountId":{"S":"acc-42"}},"SizeBytes":131,"ApproximateCreationDateTimePrecision":"MICROSECOND"},"eventSource":"aws:dynamodb"}"#;

    #[test]
    fn kinesis_microseconds() {
        let c = dec(KINESIS).unwrap();
        assert_eq!(c.table, "Invoices");
        assert_eq!(c.event, EventKind::Modify);
        assert_eq!(c.version, Version::new(1764000123456789, Some("1")), "ties by the record's place");
        assert_eq!(c.ids, EventIds::of(Some("7d0c")));
        assert!(c.ids.own.is_some());
        assert_eq!(c.key_text, r#"{"accountId":{"S":"acc-42"},"invoiceNo":{"N":"1007"}}"#);
        assert_eq!(c.new_image.unwrap().len(), 4);
    }

    #[test]
    fn sequences_past_the_stored_width_are_rejected() {
        let long = "1".repeat(SEQUENCE_WIDTH + 1);
        let e = decode(KINESIS.as_bytes(), Position::new("s", long.as_str()), &DecodeContext::default());
        assert!(matches!(e, Err(DecodeError::SequenceTooLong(_))), "{e:?}");
    }

    #[test]
    fn kinesis_milliseconds() {
        let s = r#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1764000123456,"Keys":{"k":{"S":"a"}},"NewImage":{"k":{"S":"a"}}}}"#;
        assert_eq!(dec(s).unwrap().version.micros, 1764000123456000);
    }

    #[test]
    fn streams_record_with_arn_and_sequence() {
        let s = r#"{"eventID":"5f","eventName":"INSERT","eventVersion":"1.1","eventSource":"aws:dynamodb","eventSourceARN":"arn:aws:dynamodb:eu-west-1:123:table/Stock/stream/2024-01-01T00:00:00.000","dynamodb":{"ApproximateCreationDateTime":1764000123,"Keys":{"sku":{"S":"X-9"}},"NewImage":{"sku":{"S":"X-9"},"tags":{"SS":["new","promo"]}},"SequenceNumber":"300000000012345678901234","SizeBytes":48,"StreamViewType":"NEW_AND_OLD_IMAGES"}}"#;
        let c = dec(s).unwrap();
        assert_eq!(c.table, "Stock");
        assert_eq!(c.version, Version::new(1764000123000000, Some("300000000012345678901234")));
    }

    #[test]
    fn ttl_remove_is_expire() {
        let s = r#"{"eventName":"REMOVE","tableName":"T","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},"dynamodb":{"ApproximateCreationDateTime":1764000123456,"Keys":{"k":{"S":"a"}},"OldImage":{"k":{"S":"a"},"x":{"N":"1"}}}}"#;
        let c = dec(s).unwrap();
        assert_eq!(c.event, EventKind::Expire);
        assert!(c.new_image.is_none());
        assert_eq!(c.old_image.unwrap().len(), 2);
        let user = s.replace(r#"{"type":"Service","principalId":"dynamodb.amazonaws.com"}"#, "null");
        assert_eq!(dec(&user).unwrap().event, EventKind::Remove);
    }

    #[test]
    fn export_lines_use_configured_keys() {
        let mut ctx = DecodeContext { default_table: Some("Orders".into()), ..Default::default() };
        let line = br#"{"Item":{"id":{"N":"7"},"x":{"S":"y"}}}"#;
        assert_eq!(decode(line, pos(), &ctx), Err(DecodeError::UnknownKeys("Orders".into())));
        ctx.key_attributes.insert("Orders".into(), vec!["id".into()]);
        let c = decode(line, pos(), &ctx).unwrap();
        assert_eq!((c.event, c.key_text.as_str()), (EventKind::Load, r#"{"id":{"N":"7"}}"#));
    }

    #[test]
    fn bad_records_say_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "malformed"),
            (br#"{"eventName":"INSERT","eventName":"REMOVE"}"#, "duplicate field `eventName`"),
            (br#"{"eventName":"INSERT","tableName":"T","dynamodb":{"Keys":{},"Keys":{}}}"#, "duplicate field `Keys`"),
            (br#"{"eventName":"INSERT","tableName":7}"#, "expected a string, found `7` at byte 34"),
            (br#"{"eventName":"INSERT"} trailing"#, "after the JSON document"),
            (b"\xff\xfe", "UTF-8"),
            (br#"{"eventName":"INSERT","dynamodb":{}}"#, "names no table"),
            (br#"{"eventName":"UPSERT","tableName":"T"}"#, "unknown eventName"),
            (br#"{"tableName":"T"}"#, "no `eventName`"),
            (br#"{"eventName":"REMOVE","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1}}"#, "Keys"),
            (br#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"k":{"S":"a"}}}}"#, "NewImage"),
            (br#"{"eventName":"INSERT","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"k":{"S":1}},"NewImage":{}}}"#, "malformed"),
            (br#"{"eventName":"REMOVE","tableName":"T","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"k":{"BOOL":true}}}}"#, "keys are S, N or B"),
            (br#"{"eventName":"REMOVE","tableName":"T","dynamodb":{"Keys":{"k":{"S":"a"}}}}"#, "ApproximateCreationDateTime"),
        ];
        for (raw, want) in cases {
            let err = decode(raw, pos(), &DecodeContext::default()).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
    }

    proptest::proptest! {
        /// Any bytes at all give a change or a reason, never a panic: valid records with
        /// one span replaced by arbitrary bytes (cut strings, broken escapes, stray
        /// brackets, invalid UTF-8), and short runs of JSON's own tokens.
        #[test]
        fn never_panics_on_damaged_records(
            start in 0usize..400,
            len in 0usize..40,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            tokens in proptest::collection::vec(
                proptest::sample::select(vec![
                    "{", "}", "[", "]", ",", ":", "\"", "\\u", "\\ud800", "\"S\"", "\"M\"",
                    "\"L\"", "\"N\"", "\"NS\"", "\"Keys\"", "\"NewImage\"", "\"dynamodb\"",
                    "\"eventName\"", "\"INSERT\"", "1", "-0.5e3", "null", "true", " ",
                ]),
                0..30,
            ),
        ) {
            let mut damaged = KINESIS.as_bytes().to_vec();
            let from = start.min(damaged.len());
            let to = (from + len).min(damaged.len());
            damaged.splice(from..to, junk);
            let _ = decode(&damaged, pos(), &DecodeContext::default());
            let _ = decode(tokens.concat().as_bytes(), pos(), &DecodeContext::default());
        }
    }

    #[test]
    fn skipped_fields_need_only_be_valid_json() {
        let deep = "[".repeat(500) + &"]".repeat(500);
        let record = KINESIS
            .replace(r#""awsRegion":"eu-west-1""#, &format!(r#""awsRegion":"\ud800","extra":{deep}"#))
            .replace(r#""OldImage":{"accountId":{"S":"acc-42"}}"#, r#""OldImage":{"a":{"S":"\udc00"}}"#);
        assert!(record.contains("ud800") && record.contains("udc00") && record.contains(&deep));
        assert_eq!(dec(&record).unwrap().table, "Invoices");
    }

    #[test]
    fn an_image_lacking_key_attributes_gets_them_whichever_comes_first() {
        let keys = r#""Keys":{"pk":{"S":"a"},"sk":{"N":"7"}}"#;
        let full = r#""NewImage":{"pk":{"S":"a"},"sk":{"N":"7"},"x":{"S":"y"}}"#;
        let partial = r#""NewImage":{"pk":{"S":"a"},"x":{"S":"y"}}"#;
        let bare = r#""NewImage":{"x":{"S":"y"}}"#;
        for image in [full, partial, bare] {
            for (first, second) in [(keys, image), (image, keys)] {
                let s = format!(
                    r#"{{"eventName":"INSERT","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":1764000123456,{first},{second}}}}}"#
                );
                let c = dec(&s).unwrap();
                let image = c.new_image.unwrap();
                let names: Vec<&str> = image.keys().map(|k| k.as_str()).collect();
                assert_eq!(names, ["pk", "sk", "x"], "{s}");
                assert_eq!(image.get("sk"), c.keys.get("sk"));
            }
        }
    }

    proptest::proptest! {
        /// An export line read straight into the packed form gives the change its item's
        /// tree gives: the item whole as its image, the configured key attributes as its keys.
        #[test]
        fn export_lines_decode_to_their_items(
            entries in proptest::collection::btree_map("[a-z]{1,6}", crate::packed::tests::value(), 0..8),
            pk in "[a-z0-9]{1,8}",
            sk in proptest::prelude::any::<i32>(),
        ) {
            let mut item: Item = entries.into_iter().collect();
            item.insert("pk".into(), AttrValue::S(pk.as_str().into()));
            item.insert("sk".into(), AttrValue::N(crate::number::Number::parse(&sk.to_string()).unwrap()));
            let mut typed = String::new();
            crate::value::write_typed_object(&mut typed, &item);
            let line = format!(r#"{{"Item":{typed}}}"#);
            // The oracle: what the tree reader makes of the same text.
            let item = Item::from_typed_json(&typed).unwrap();
            let mut ctx = DecodeContext { default_table: Some("Orders".into()), ..Default::default() };
            ctx.key_attributes.insert("Orders".into(), vec!["pk".into(), "sk".into()]);
            let change = decode(line.as_bytes(), pos(), &ctx).unwrap();
            let keys: Item = item.iter().filter(|(k, _)| ["pk", "sk"].contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
            proptest::prop_assert_eq!(change.event, EventKind::Load);
            proptest::prop_assert_eq!(&change.key_text, &key_text(&keys));
            proptest::prop_assert_eq!(&change.keys, &keys);
            proptest::prop_assert_eq!(change.new_image.as_ref(), Some(&item));
        }
    }

    #[test]
    fn export_lines_lacking_a_key_or_repeating_a_name_say_why() {
        let mut ctx = DecodeContext { default_table: Some("Orders".into()), ..Default::default() };
        ctx.key_attributes.insert("Orders".into(), vec!["id".into()]);
        let missing = decode(br#"{"Item":{"x":{"S":"y"}}}"#, pos(), &ctx).unwrap_err();
        assert_eq!(missing, DecodeError::MissingKeyAttribute("id".into()));
        let twice = decode(br#"{"Item":{"id":{"N":"1"},"id":{"N":"2"}}}"#, pos(), &ctx).unwrap_err();
        assert!(twice.to_string().contains("duplicate attribute name `id`"), "{twice}");
        let bad_key = decode(br#"{"Item":{"id":{"BOOL":true}}}"#, pos(), &ctx).unwrap_err();
        assert!(bad_key.to_string().contains("keys are S, N or B"), "{bad_key}");
    }

    #[test]
    fn arn_parsing() {
        assert_eq!(
            table_from_arn("arn:aws:dynamodb:us-east-1:1:table/My.Table-1/stream/x").as_deref(),
            Some("My.Table-1")
        );
        assert_eq!(table_from_arn("arn:aws:kinesis:us-east-1:1:stream/x"), None);
    }
}
