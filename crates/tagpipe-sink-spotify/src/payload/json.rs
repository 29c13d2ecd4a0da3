//! A [`CapiEvent`]'s JSON written straight into the request's buffer: the bytes `serde_json`
//! writes for it (compact, keys in order, absent fields left out), without serde's per-field
//! machinery. The event's own member names are constants, written as they are; other strings
//! (values, and member names of `event_details` and `user_data`) are searched eight bytes at a
//! time for what needs escaping and copied whole when nothing does (nearly always: URLs, ids,
//! hashes), with `serde_json` escaping the rest. Arbitrary JSON values (`event_details` extras)
//! go through `serde_json`.

use std::ops::Range;

use super::{CapiEvent, CapiText, Member, Object};

impl CapiEvent<'_> {
    /// Appends the event's JSON to `out`. Returns where in `out` the event name's text is, when
    /// it was copied unescaped (nearly always): a sink that keeps the JSON can read the name
    /// from it rather than keeping a copy.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Option<Range<usize>> {
        let mut object = ObjectWriter::open(out);
        if let Some(source) = self.action_source {
            object.own_key("action_source");
            write_str(object.out, source);
        }
        object.own_key("event_details");
        self.event_details.write_json(object.out);
        if let Some(id) = &self.event_id {
            object.own_key("event_id");
            write_text(object.out, id);
        }
        object.own_key("event_name");
        let name_start = object.out.len() + 1;
        let name = write_str(object.out, &self.event_name)
            .then(|| name_start..name_start + self.event_name.len());
        if let Some(url) = &self.event_source_url {
            object.own_key("event_source_url");
            write_str(object.out, url);
        }
        object.own_key("event_time");
        write_text(object.out, &self.event_time);
        if self.opt_out_targeting {
            object.own_key("opt_out_targeting");
            object.out.extend_from_slice(b"true");
        }
        object.own_key("user_data");
        self.user_data.write_json(object.out);
        object.close();
        name
    }
}

impl Object<'_> {
    pub(super) fn write_json(&self, out: &mut Vec<u8>) {
        let mut object = ObjectWriter::open(out);
        for (key, member) in &self.0 {
            object.key(key);
            member.write_json(object.out);
        }
        object.close();
    }
}

impl Member<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Member::Text(text) => {
                write_str(out, text);
            }
            Member::Value(value) => {
                // Writing into a vector cannot fail; a value's own serialisation does not either.
                let _ = serde_json::to_writer(&mut *out, value.as_ref());
            }
            Member::Texts(texts) => {
                out.push(b'[');
                for (i, text) in texts.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, text);
                }
                out.push(b']');
            }
        }
    }
}

/// Writes one JSON object's braces and the commas between its members.
struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `"key":`, after a comma unless it is the first member.
    fn key(&mut self, key: &str) {
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
    }

    /// [`Self::key`] for a member name of the CAPI event itself: plain ASCII, nothing to escape,
    /// so not searched for what would need it.
    fn own_key(&mut self, key: &'static str) {
        self.comma();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A CAPI field's text as a JSON string: made text (ASCII digits, letters and separators)
/// copied between quotes without a check, given text as [`write_str`] writes it.
fn write_text(out: &mut Vec<u8>, text: &CapiText<'_>) {
    match text {
        CapiText::Made(made) => {
            out.push(b'"');
            out.extend_from_slice(made.as_bytes());
            out.push(b'"');
        }
        CapiText::Given(given) => {
            write_str(out, given);
        }
    }
}

/// `s` as a JSON string: copied whole between quotes when nothing in it needs escaping (then
/// `true`), else escaped by `serde_json` (the same escapes as the rest of the request).
fn write_str(out: &mut Vec<u8>, s: &str) -> bool {
    if needs_escaping(s.as_bytes()) {
        // Writing into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        false
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        true
    }
}

/// Whether `bytes` has a `"`, a `\` or a control character (below 0x20): what JSON escapes.
/// Eight bytes at a time, each tested in parallel within a `u64`.
fn needs_escaping(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES << 7;
    // The high bit of each byte that is zero in `x` (and possibly of bytes above one): enough
    // to tell whether there is any.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let (chunks, tail) = bytes.as_chunks::<8>();
    let word_needs = |word: u64| {
        let quote = zero(word ^ (ONES * u64::from(b'"')));
        let backslash = zero(word ^ (ONES * u64::from(b'\\')));
        // Below 0x20: subtracting 0x20 borrows into the high bit, unless the byte had it set
        // (0x80 and above are UTF-8, never escaped).
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
        quote | backslash | control != 0
    };
    chunks
        .iter()
        .any(|chunk| word_needs(u64::from_le_bytes(*chunk)))
        || tail.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escape_test_agrees_with_a_byte_by_byte_one_for_every_byte_and_position() {
        for special in 0..=255u8 {
            for at in 0..20 {
                for len in [at + 1, 20] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    // A byte above the tested one, which a parallel compare could mark falsely.
                    if at + 1 < len {
                        bytes[at + 1] = special.wrapping_add(1);
                    }
                    let naive = bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
                    assert_eq!(needs_escaping(&bytes), naive, "{special} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in [
            "",
            "plain",
            "https://shop.example.com/products/shirt?color=blue&size=m",
            "quote \" and backslash \\ and tab \t and bell \u{7}",
            "unicode é 漢字 😀 and \u{1f} \u{7f}",
            "\"",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
