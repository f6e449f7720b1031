//! The string type of names and values, shared by numbers, values and items.

/// Attribute names and string values: most are short, and short ones are stored inline, so
/// decoding an item allocates per map and list rather than per string.
pub type Text = compact_str::CompactString;

/// Heap memory of a name or string value: none when it is stored inline.
pub fn text_heap_bytes(t: &Text) -> usize {
    if t.is_heap_allocated() {
        t.capacity()
    } else {
        0
    }
}
