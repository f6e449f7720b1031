//! Reproducible change histories: the records DynamoDB would emit for them, and the state a
//! correct replica must end in. Used by dynashift's tests and its benchmark; not part of the
//! shipped binary.

pub mod export;

use std::collections::BTreeMap;

use dynashift_core::number::Number;
use dynashift_core::value::{key_text, write_json_string, write_typed_object, AttrValue, Item};

/// One change as DynamoDB records it.
#[derive(Debug, Clone)]
pub struct Event {
    pub table: String,
    pub keys: Item,
    pub kind: EventKindGen,
    /// The new image for INSERT/MODIFY; the old image for REMOVE.
    pub image: Option<Item>,
    pub old_image: Option<Item>,
    pub micros: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKindGen {
    Insert,
    Modify,
    Remove,
    Expire,
}

impl EventKindGen {
    /// The record's `eventName`: a TTL expiry is a REMOVE.
    fn event_name(self) -> &'static str {
        match self {
            EventKindGen::Insert => "INSERT",
            EventKindGen::Modify => "MODIFY",
            EventKindGen::Remove | EventKindGen::Expire => "REMOVE",
        }
    }
}

/// `,"NewImage":{…},"OldImage":{…}` for the images the event has.
fn write_images(out: &mut String, event: &Event) {
    if let Some(image) = &event.image {
        out.push_str(",\"NewImage\":");
        write_typed_object(out, image);
    }
    if let Some(old) = &event.old_image {
        out.push_str(",\"OldImage\":");
        write_typed_object(out, old);
    }
}

/// The Kinesis Data Streams for DynamoDB JSON of `event` (microsecond precision when
/// `micros_precision`, else milliseconds, as DynamoDB writes them).
pub fn kinesis_record(event: &Event, micros_precision: bool, event_id: u64) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"awsRegion\":\"eu-west-1\",\"eventID\":\"");
    out.push_str(&format!("{event_id:016x}-0000-4000-8000-{event_id:012x}"));
    out.push_str("\",\"eventName\":\"");
    out.push_str(event.kind.event_name());
    out.push_str("\",\"userIdentity\":");
    if event.kind == EventKindGen::Expire {
        out.push_str("{\"type\":\"Service\",\"principalId\":\"dynamodb.amazonaws.com\"}");
    } else {
        out.push_str("null");
    }
    out.push_str(",\"recordFormat\":\"application/json\",\"tableName\":");
    write_json_string(&mut out, &event.table);
    out.push_str(",\"dynamodb\":{\"ApproximateCreationDateTime\":");
    if micros_precision {
        out.push_str(&event.micros.to_string());
    } else {
        out.push_str(&(event.micros / 1000).to_string());
    }
    out.push_str(",\"Keys\":");
    write_typed_object(&mut out, &event.keys);
    write_images(&mut out, event);
    out.push_str(",\"SizeBytes\":100");
    if micros_precision {
        out.push_str(",\"ApproximateCreationDateTimePrecision\":\"MICROSECOND\"");
    }
    out.push_str("},\"eventSource\":\"aws:dynamodb\"}");
    out
}

/// The DynamoDB Streams JSON of `event` as a relaying function forwards it: no `tableName`,
/// the table in `eventSourceARN`, time in whole seconds, order in `SequenceNumber`.
pub fn streams_record(event: &Event, sequence: u128) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"eventID\":\"");
    out.push_str(&format!("{sequence:032x}"));
    out.push_str("\",\"eventName\":\"");
    out.push_str(event.kind.event_name());
    out.push_str("\",\"eventVersion\":\"1.1\",\"eventSource\":\"aws:dynamodb\",\"awsRegion\":\"eu-west-1\",");
    if event.kind == EventKindGen::Expire {
        out.push_str("\"userIdentity\":{\"type\":\"Service\",\"principalId\":\"dynamodb.amazonaws.com\"},");
    }
    out.push_str("\"eventSourceARN\":");
    write_json_string(
        &mut out,
        &format!(
            "arn:aws:dynamodb:eu-west-1:123456789012:table/{}/stream/2026-11-01T00:00:00.000",
            event.table
        ),
    );
    out.push_str(",\"dynamodb\":{\"ApproximateCreationDateTime\":");
    out.push_str(&(event.micros / 1_000_000).to_string());
    out.push_str(",\"Keys\":");
    write_typed_object(&mut out, &event.keys);
    write_images(&mut out, event);
    out.push_str(&format!(
        ",\"SequenceNumber\":\"{sequence}\",\"SizeBytes\":100,\"StreamViewType\":\"NEW_AND_OLD_IMAGES\"}}}}"
    ));
    out
}

/// The final state a correct replica holds: table → key text → item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub tables: BTreeMap<String, BTreeMap<String, Item>>,
    /// Items whose last change was a TTL expiry (for `ttl_deletes = "keep"` checks).
    pub expired: BTreeMap<String, BTreeMap<String, Item>>,
    /// The time (µs) and kind of each item's last change.
    pub last_change: BTreeMap<String, BTreeMap<String, (i64, EventKindGen)>>,
}

impl Model {
    /// Applies events in creation order.
    pub fn apply(&mut self, event: &Event) {
        let table = self.tables.entry(event.table.clone()).or_default();
        let key = key_text(&event.keys);
        self.last_change
            .entry(event.table.clone())
            .or_default()
            .insert(key.clone(), (event.micros, event.kind));
        match event.kind {
            EventKindGen::Insert | EventKindGen::Modify => {
                if let Some(image) = &event.image {
                    table.insert(key.clone(), image.clone());
                }
                if let Some(e) = self.expired.get_mut(&event.table) {
                    e.remove(&key);
                }
            }
            EventKindGen::Remove | EventKindGen::Expire => {
                let old = table.remove(&key);
                if event.kind == EventKindGen::Expire {
                    if let Some(old) = old {
                        self.expired.entry(event.table.clone()).or_default().insert(key, old);
                    }
                } else if let Some(e) = self.expired.get_mut(&event.table) {
                    e.remove(&key);
                }
            }
        }
    }
}

/// A small, fast, reproducible generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Shape of a generated workload.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub records: usize,
    pub keys: usize,
    pub duplicate_percent: u64,
    pub shuffle_window: usize,
    pub seed: u64,
    pub expire_percent: u64,
}

impl WorkloadSpec {
    /// W1: 1,000,000 records, 3 tables, 200,000 keys, 30/60/10 INSERT/MODIFY/REMOVE,
    /// ~12 attributes with a map and a list, 5% duplicates, shuffled within 1,000.
    pub fn w1() -> WorkloadSpec {
        WorkloadSpec {
            records: 1_000_000,
            keys: 200_000,
            duplicate_percent: 5,
            shuffle_window: 1000,
            seed: 1,
            expire_percent: 1,
        }
    }
}

const TABLES: [&str; 3] = ["Orders", "UserSessions", "device-metrics"];

fn n(text: &str) -> AttrValue {
    AttrValue::N(Number::parse(text).unwrap_or_else(|_| unreachable!("generated numbers are valid")))
}

fn keys_for(table_index: usize, key: u64) -> Item {
    let mut k = Item::new();
    match table_index {
        0 => {
            k.insert("orderId".into(), AttrValue::S(format!("ord-{key:08}").into()));
        }
        1 => {
            k.insert("userId".into(), AttrValue::S(format!("user-{}", key / 4).into()));
            k.insert("startedAt".into(), n(&(1_700_000_000 + key % 4).to_string()));
        }
        _ => {
            k.insert("deviceId".into(), n(&key.to_string()));
        }
    }
    k
}

fn image_for(rng: &mut Rng, keys: &Item, version: u64) -> Item {
    let mut item = keys.clone();
    let status = ["NEW", "PAID", "SHIPPED", "CANCELLED"][rng.below(4) as usize];
    item.insert("status".into(), AttrValue::S(status.into()));
    item.insert("amount".into(), n(&format!("{}.{:02}", rng.below(100_000), rng.below(100))));
    item.insert("quantity".into(), n(&rng.below(50).to_string()));
    item.insert("express".into(), AttrValue::Bool(rng.chance(30)));
    item.insert("revision".into(), n(&version.to_string()));
    item.insert(
        "customerEmail".into(),
        AttrValue::S(format!("c{}@example.com", rng.below(1_000_000)).into()),
    );
    item.insert("checksum".into(), AttrValue::B(rng.next_u64().to_le_bytes().to_vec()));
    item.insert(
        "tags".into(),
        AttrValue::Ss(vec![format!("t{}", rng.below(10)).into(), format!("u{}", rng.below(10)).into()]),
    );
    let mut address = Item::new();
    address.insert(
        "city".into(),
        AttrValue::S(["Lisbon", "Oslo", "Lyon", "Kyoto"][rng.below(4) as usize].into()),
    );
    address.insert("zip".into(), n(&format!("{:05}", rng.below(99_999))));
    address.insert("geo".into(), AttrValue::L(vec![n("38.7223"), n("-9.1393")]));
    item.insert("shipTo".into(), AttrValue::M(address));
    let lines = (0..1 + rng.below(3))
        .map(|i| {
            let mut line = Item::new();
            line.insert("sku".into(), AttrValue::S(format!("SKU-{}", rng.below(5000) + i).into()));
            line.insert("qty".into(), n(&(1 + rng.below(5)).to_string()));
            AttrValue::M(line)
        })
        .collect();
    item.insert("lines".into(), AttrValue::L(lines));
    if rng.chance(50) {
        item.insert("note".into(), AttrValue::S("leave at the door".into()));
    }
    if rng.chance(3) {
        // A type change: the same attribute as text.
        item.insert("quantity".into(), AttrValue::S("unknown".into()));
    }
    item
}

/// Generates a workload: the records in arrival order (duplicated and shuffled) and the
/// model of the final state.
pub fn generate(spec: &WorkloadSpec, micros_precision: bool) -> (Vec<String>, Model) {
    let (events, model) = generate_events(spec, micros_precision);
    let lines = events.iter().map(|(e, id)| kinesis_record(e, micros_precision, *id)).collect();
    (lines, model)
}

/// The events of a workload in arrival order, each with its event id (a duplicate carries
/// its original's), and the model of the final state.
pub fn generate_events(spec: &WorkloadSpec, micros_precision: bool) -> (Vec<(Event, u64)>, Model) {
    let mut rng = Rng::new(spec.seed);
    let mut live: Vec<Option<Item>> = vec![None; spec.keys];
    let mut model = Model::default();
    let mut micros: i64 = 1_764_000_000_000_000;
    // Millisecond records must still order one item's changes (DynamoDB bumps equal times),
    // so without microsecond precision every change gets its own millisecond.
    let (step, spread) = if micros_precision { (1, 2_000) } else { (1_000, 2) };
    let mut delivered: Vec<(Event, u64)> = Vec::with_capacity(spec.records);
    let mut version = 0u64;
    while delivered.len() < spec.records {
        micros += step * (1 + rng.below(spread) as i64);
        let roll = rng.below(100);
        let key = rng.below(spec.keys as u64);
        let table_index = (key % 3) as usize;
        let keys = keys_for(table_index, key);
        let slot = &mut live[key as usize];
        let (kind, image, old) = match (slot.clone(), roll) {
            (None, _) => (EventKindGen::Insert, Some(image_for(&mut rng, &keys, version)), None),
            (Some(old), r) if r < 30 + 60 => {
                (EventKindGen::Modify, Some(image_for(&mut rng, &keys, version)), Some(old))
            }
            (Some(old), _) => {
                let expire = rng.chance(spec.expire_percent * 10);
                (if expire { EventKindGen::Expire } else { EventKindGen::Remove }, None, Some(old))
            }
        };
        *slot = image.clone();
        let event = Event { table: TABLES[table_index].into(), keys, kind, image, old_image: old, micros };
        model.apply(&event);
        delivered.push((event, version));
        version += 1;
        // Duplicates: re-deliveries of a recent record.
        if delivered.len() < spec.records && rng.chance(spec.duplicate_percent) {
            let back = rng.below(delivered.len().min(spec.shuffle_window.max(1)) as u64) as usize;
            let dup = delivered[delivered.len() - 1 - back].clone();
            delivered.push(dup);
        }
    }
    shuffle_within_windows(&mut delivered, spec.shuffle_window, &mut rng);
    (delivered, model)
}

/// Fisher–Yates inside consecutive windows: records arrive out of order, but not far.
pub fn shuffle_within_windows<T>(items: &mut [T], window: usize, rng: &mut Rng) {
    if window < 2 {
        return;
    }
    for chunk in items.chunks_mut(window) {
        for i in (1..chunk.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            chunk.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynashift_core::change::Position;
    use dynashift_core::decode::{decode, DecodeContext};

    #[test]
    fn generated_records_decode() {
        let spec = WorkloadSpec {
            records: 2000,
            keys: 300,
            duplicate_percent: 5,
            shuffle_window: 100,
            seed: 7,
            expire_percent: 1,
        };
        let (lines, model) = generate(&spec, true);
        assert_eq!(lines.len(), 2000);
        for (i, l) in lines.iter().enumerate() {
            decode(l.as_bytes(), Position::new("t", i.to_string()), &DecodeContext::default()).unwrap();
        }
        assert_eq!(model.tables.len(), 3);
    }
}
