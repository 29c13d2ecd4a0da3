//! Strict `application/x-www-form-urlencoded` decoding: bad percent-encoding and invalid UTF-8
//! are errors that say where, not silently replaced characters.

use std::borrow::Cow;
use std::cell::RefCell;

/// Decoded name/value pairs, borrowing from the input where nothing needed decoding.
pub(crate) type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Decodes `a=1&b=x+y` into name/value pairs, in order. Empty pairs are skipped. Components
/// without escapes are borrowed from `input`, not copied.
pub(crate) fn parse(input: &[u8]) -> Result<Pairs<'_>, String> {
    let text = std::str::from_utf8(input).map_err(|_| raw_utf8_error(input))?;
    parse_str(text)
}

/// [`parse`] for input already known to be text (a request's query string).
pub(crate) fn parse_str(text: &str) -> Result<Pairs<'_>, String> {
    let mut pairs = Vec::with_capacity(32);
    split(text, |name, value, escaped| {
        pairs.push((name, component(value, escaped)?));
        Ok(())
    })?;
    Ok(pairs)
}

/// Decodes `a=1&b=x+y`, already known to be text (a request's query string), and hands each
/// name/value pair to `pair`, in order (see [`parse`]). A value is lent, not given: one that
/// needed decoding was decoded into this thread's buffer, which the next such value (and the
/// next call) reuses — no allocation once it has held the longest value.
pub(crate) fn for_each_str<'a>(
    text: &'a str,
    pair: impl FnMut(Cow<'a, str>, &str),
) -> Result<(), String> {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = lend_each(text, &mut scratch, pair);
            if scratch.capacity() > SCRATCH_KEPT {
                // An unusually long value: its buffer is not kept.
                *scratch = Vec::new();
            }
            result
        }
        // Called again from within `pair` (nothing does): a buffer of its own.
        Err(_) => lend_each(text, &mut Vec::new(), pair),
    })
}

/// [`for_each_str`] with `scratch` as the buffer for escaped values.
fn lend_each<'a>(
    text: &'a str,
    scratch: &mut Vec<u8>,
    mut pair: impl FnMut(Cow<'a, str>, &str),
) -> Result<(), String> {
    split(text, |name, value, escaped| {
        if escaped {
            scratch.clear();
            decode_into(value.as_bytes(), scratch)?;
            let decoded = std::str::from_utf8(scratch).map_err(|e| after_decoding(&e))?;
            pair(name, decoded);
        } else {
            pair(name, value);
        }
        Ok(())
    })
}

/// The most bytes [`for_each_str`] keeps in its buffer between calls.
const SCRATCH_KEPT: usize = 16 * 1024;

/// Splits `a=1&b=x+y` into its pairs, in order, and hands each to `pair`: the decoded name, the
/// value as it is, and whether the value needs decoding. A value's error is reported with its
/// parameter's name.
fn split<'a>(
    text: &'a str,
    mut pair: impl FnMut(Cow<'a, str>, &'a str, bool) -> Result<(), String>,
) -> Result<(), String> {
    let bytes = text.as_bytes();
    // One pass: find each `&`-separated part, its `=`, and whether either side needs decoding.
    // Each side is searched only for the bytes that still matter there: a name for all four,
    // a value for `&`, `%`, `+` (a later `=` is part of it), and the rest of a value that is
    // known to need decoding for `&` alone — so a long escaped value (a URL, the client hints'
    // version list) is crossed eight bytes at a time rather than stopping at every escape.
    let mut start = 0;
    while start <= bytes.len() {
        let mut end = start;
        let mut eq = None;
        let mut name_escaped = false;
        loop {
            end = find_any(bytes, end, [b'&', b'=', b'%', b'+']);
            match bytes.get(end) {
                None | Some(b'&') => break,
                Some(b'=') => {
                    eq = Some(end);
                    break;
                }
                Some(_) => {
                    name_escaped = true;
                    end += 1;
                }
            }
        }
        let mut value_escaped = false;
        if eq.is_some() {
            end = find_any(bytes, end + 1, [b'&', b'%', b'+']);
            if bytes.get(end).is_some_and(|&b| b != b'&') {
                value_escaped = true;
                end = find_any(bytes, end + 1, [b'&']);
            }
        }
        if end > start {
            let (name, value) = match eq {
                Some(i) => (&text[start..i], &text[i + 1..end]),
                None => (&text[start..end], ""),
            };
            let raw_name = name;
            let name = component(name, name_escaped)
                .map_err(|e| format!("parameter name `{name}`: {e}"))?;
            pair(name, value, value_escaped).map_err(|e| {
                // The name decoded again: only on this error path (the pair took it).
                let name = component(raw_name, name_escaped).unwrap_or_default();
                format!("parameter `{name}`: {e}")
            })?;
        }
        start = end + 1;
    }
    Ok(())
}

/// The position of the first byte of `set` at or after `from` (or the length): eight bytes at a
/// time, each compared with every byte of `set` in parallel within a `u64`.
fn find_any<const N: usize>(bytes: &[u8], mut from: usize, set: [u8; N]) -> usize {
    while let Some(chunk) = bytes.get(from..).and_then(<[u8]>::first_chunk::<WORD>) {
        let word = u64::from_le_bytes(*chunk);
        let found = set.iter().fold(0, |found, &b| found | byte_mask(word, b));
        if found != 0 {
            // The lowest marked byte is exact (higher ones may be false positives).
            return from + (found.trailing_zeros() / 8) as usize;
        }
        from += WORD;
    }
    while bytes.get(from).is_some_and(|b| !set.contains(b)) {
        from += 1;
    }
    from
}

/// The high bit of each byte of `word` that equals `byte` (and possibly of bytes above one).
fn byte_mask(word: u64, byte: u8) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & (ONES << 7)
}

fn component(text: &str, escaped: bool) -> Result<Cow<'_, str>, String> {
    if escaped {
        decode_escaped(text.as_bytes()).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(text))
    }
}

fn raw_utf8_error(input: &[u8]) -> String {
    for part in input.split(|&b| b == b'&') {
        let name_end = part.iter().position(|&b| b == b'=').unwrap_or(part.len());
        if std::str::from_utf8(part).is_err() {
            let name = String::from_utf8_lossy(&part[..name_end]);
            return format!("parameter `{name}`: invalid UTF-8");
        }
    }
    "invalid UTF-8".to_owned()
}

/// Percent-decodes one component (`+` is a space), borrowing when there is nothing to decode.
pub(crate) fn decode(input: &[u8]) -> Result<Cow<'_, str>, String> {
    if find_any(input, 0, [b'%', b'+']) == input.len() {
        return std::str::from_utf8(input)
            .map(Cow::Borrowed)
            .map_err(|e| format!("invalid UTF-8 (at byte {})", e.valid_up_to()));
    }
    decode_escaped(input).map(Cow::Owned)
}

fn decode_escaped(input: &[u8]) -> Result<String, String> {
    // Decoding never lengthens.
    let mut out = Vec::with_capacity(input.len());
    decode_into(input, &mut out)?;
    String::from_utf8(out).map_err(|e| after_decoding(&e.utf8_error()))
}

/// The error for bytes that are not UTF-8 once decoded.
fn after_decoding(error: &std::str::Utf8Error) -> String {
    format!(
        "invalid UTF-8 after percent-decoding (at byte {})",
        error.valid_up_to()
    )
}

/// Percent-decodes `input` (`+` is a space) onto the end of `out`, which may then not be UTF-8.
fn decode_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    // Eight bytes at a time: a word is appended whole and, when it holds an escape, cut back to
    // the bytes before it — no copy call per stretch between escapes (most are shorter than a
    // word). The output never runs ahead of the input, so a word appended at input byte `i`
    // ends by `i + 8 <= input.len()`: the room reserved here is never exceeded.
    out.reserve(input.len());
    let mut i = 0;
    while i < input.len() {
        if let Some(word) = input[i..].first_chunk::<WORD>() {
            let bits = u64::from_le_bytes(*word);
            let found = byte_mask(bits, b'%') | byte_mask(bits, b'+');
            out.extend_from_slice(word);
            if found == 0 {
                i += WORD;
                continue;
            }
            // The lowest marked byte is exact: the escape.
            let before = (found.trailing_zeros() / 8) as usize;
            out.truncate(out.len() - WORD + before);
            i += before;
        } else if !matches!(input[i], b'%' | b'+') {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if input[i] == b'+' {
            out.push(b' ');
            i += 1;
            continue;
        }
        // One table look-up per digit; a non-digit sets the high bits.
        let digits = match input.get(i + 1..i + 3) {
            Some(&[high, low]) => (HEX[usize::from(high)], HEX[usize::from(low)]),
            _ => (NOT_HEX, NOT_HEX),
        };
        if (digits.0 | digits.1) & NOT_HEX != 0 {
            return Err(format!("bad percent-encoding at byte {i}"));
        }
        out.push(digits.0 << 4 | digits.1);
        i += 3;
    }
    Ok(())
}

/// The bytes [`decode_into`] and [`find_any`] take at a time.
const WORD: usize = 8;

/// Marks a byte that is not a hexadecimal digit in [`HEX`].
const NOT_HEX: u8 = 0xF0;

/// The value of each hexadecimal digit; [`NOT_HEX`] for every other byte.
static HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        let value = digit as u8;
        table[b"0123456789abcdef"[digit] as usize] = value;
        table[b"0123456789ABCDEF"[digit] as usize] = value;
        digit += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(
            parse(b"a=1&b=x+y%21&&c").unwrap(),
            [
                (Cow::from("a"), Cow::from("1")),
                (Cow::from("b"), Cow::from("x y!")),
                (Cow::from("c"), Cow::from(""))
            ]
        );
        assert_eq!(
            parse(b"dl=https%3A%2F%2Fe.com%2F%C3%A9").unwrap()[0].1,
            "https://e.com/é"
        );
        assert!(
            parse(b"a=%zz")
                .unwrap_err()
                .contains("bad percent-encoding")
        );
        assert!(parse(b"a=%4").is_err());
        assert!(parse(b"a=%ff%fe").unwrap_err().contains("invalid UTF-8"));
        assert!(parse(b"a=\xff").unwrap_err().contains("invalid UTF-8"));
    }

    /// The thread's decoding buffer: a value longer than the buffer keeps between calls decodes
    /// whole, and the calls after it (with the buffer let go, then grown again) decode as
    /// `parse` does.
    #[test]
    fn the_reused_buffer_serves_values_longer_than_it_keeps_and_shorter_ones_after() {
        let long = "%C3%A9x+".repeat(SCRATCH_KEPT / 4);
        for query in [
            format!("a=1&long={long}&b=%21"),
            "short=%41".to_owned(),
            format!("long={long}"),
        ] {
            let mut lent = Vec::new();
            for_each_str(&query, |name, value| {
                lent.push((name.into_owned(), value.to_owned()));
            })
            .unwrap();
            let owned: Vec<(String, String)> = parse_str(&query)
                .unwrap()
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(lent, owned);
        }
    }

    /// A call made while another holds the thread's buffer (from within its `pair`) decodes
    /// with a buffer of its own rather than failing.
    #[test]
    fn a_call_from_within_a_pair_gets_its_own_buffer() {
        let mut inner = Vec::new();
        for_each_str("outer=%41", |_, outer| {
            for_each_str("inner=%42", |_, value| {
                inner.push(format!("{outer}{value}"));
            })
            .unwrap();
        })
        .unwrap();
        assert_eq!(inner, ["AB"]);
    }

    /// `for_each_str` lends each value (escaped ones decoded into one reused buffer) and gives
    /// the pairs and errors that `parse` gives.
    #[test]
    fn lent_values_and_errors_match_parse() {
        for query in [
            "a=1&b=x+y%21&&c",
            "dl=https%3A%2F%2Fe.com%2F%C3%A9&dt=A%20long%20title&x=short%21&dr=plain",
            "n%61me=v%61lue&e=",
            "a=%zz",
            "ok=1&a=%4",
            "ok=%41%42&a=%ff%fe",
            "b%zz=1",
        ] {
            let mut lent = Vec::new();
            let result = for_each_str(query, |name, value| {
                lent.push((name.into_owned(), value.to_owned()));
            });
            match parse_str(query) {
                Ok(pairs) => {
                    result.unwrap();
                    let owned: Vec<(String, String)> = pairs
                        .into_iter()
                        .map(|(n, v)| (n.into_owned(), v.into_owned()))
                        .collect();
                    assert_eq!(lent, owned, "{query}");
                }
                Err(error) => assert_eq!(result.unwrap_err(), error, "{query}"),
            }
        }
        // The messages themselves (both functions share the splitter).
        for (query, message) in [
            (
                "ok=%41%42&a=%ff%fe",
                "parameter `a`: invalid UTF-8 after percent-decoding (at byte 0)",
            ),
            ("a=%zz", "parameter `a`: bad percent-encoding at byte 0"),
            (
                "b%zz=1",
                "parameter name `b%zz`: bad percent-encoding at byte 1",
            ),
            // Escapes found by the eight-byte search rather than the last few bytes' loop.
            (
                "a=abcdefg%zz",
                "parameter `a`: bad percent-encoding at byte 7",
            ),
            (
                "a=abcdefghij%4",
                "parameter `a`: bad percent-encoding at byte 10",
            ),
            (
                "a=ab+defg%4x&b=1",
                "parameter `a`: bad percent-encoding at byte 7",
            ),
            (
                "a=%41bcdefghijk%zzzzzzzzz",
                "parameter `a`: bad percent-encoding at byte 13",
            ),
        ] {
            assert_eq!(for_each_str(query, |_, _| {}).unwrap_err(), message);
        }
    }

    /// The eight-bytes-at-a-time search finds exactly the first byte of its set, whatever the
    /// bytes around it (the parallel compare can mark a byte above a match too).
    #[test]
    fn the_byte_set_search_finds_the_first_one_exactly() {
        const SET: [u8; 4] = [b'&', b'=', b'%', b'+'];
        fn naive(bytes: &[u8], from: usize, set: &[u8]) -> usize {
            (from..bytes.len())
                .find(|&i| set.contains(&bytes[i]))
                .unwrap_or(bytes.len())
        }
        for filler in 0..=255u8 {
            if SET.contains(&filler) {
                continue;
            }
            for special in SET {
                for at in 0..20 {
                    let mut bytes = vec![filler; 20];
                    bytes[at] = special;
                    // Right after it the byte one above (which the parallel compare can mark
                    // falsely), further on another special: neither may win.
                    if at + 1 < 20 {
                        bytes[at + 1] = special + 1;
                    }
                    if at + 3 < 20 {
                        bytes[at + 3] = b'&';
                    }
                    for from in 0..=at {
                        assert_eq!(find_any(&bytes, from, SET), at, "{filler} {special} {at}");
                    }
                    assert_eq!(find_any(&bytes, at + 1, SET), naive(&bytes, at + 1, &SET));
                    // A smaller set skips what is not in it.
                    assert_eq!(
                        find_any(&bytes, 0, [b'&']),
                        naive(&bytes, 0, b"&"),
                        "{filler} {special} {at}"
                    );
                }
            }
            assert_eq!(find_any(&[filler; 13], 0, SET), 13);
        }
    }

    /// The one-pass splitter and decoder (eight bytes searched at a time, decoding only what
    /// has escapes) must give what plain splitting and a naive decoder give, wherever the special
    /// bytes fall.
    #[test]
    fn splits_and_decodes_as_a_naive_reference_does() {
        fn naive_decode(s: &str) -> String {
            let bytes = s.replace('+', " ").into_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        }
        fn reference(input: &str) -> Vec<(String, String)> {
            input
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    (naive_decode(n), naive_decode(v))
                })
                .collect()
        }
        let mut random = tagpipe_core::random::Repeatable::new(0x5EED_0002);
        let alphabet: &[&str] = &[
            "a",
            "Z",
            "9",
            ".",
            "&",
            "=",
            "+",
            "%41",
            "%2B",
            "%2b",
            "%C3%A9",
            "~",
            // Bytes the eight-byte masks can mark falsely above a match (`'`, `<`, `$`, `*`
            // follow `&`, `=`, `%`, `+`), and text that is not ASCII.
            "*",
            "$",
            "'",
            "<",
            "¥",
            "«",
            // Stretches longer than the search's eight bytes.
            "abcdefghijkl",
            "https://e.com/p?q",
        ];
        for _ in 0..2000 {
            let len = random.below(60);
            let input: String = (0..len)
                .map(|_| alphabet[random.below(alphabet.len())])
                .collect();
            let got: Vec<(String, String)> = parse(input.as_bytes())
                .unwrap()
                .into_iter()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(got, reference(&input), "{input}");
            // The lending path decodes into one buffer sized at the first escaped value.
            let mut lent = Vec::new();
            for_each_str(&input, |n, v| lent.push((n.into_owned(), v.to_owned()))).unwrap();
            assert_eq!(lent, got, "{input}");
        }
    }
}
