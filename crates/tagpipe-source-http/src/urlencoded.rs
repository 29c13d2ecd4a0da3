//! Strict `application/x-www-form-urlencoded` decoding: bad percent-encoding and invalid UTF-8
//! are errors that say where, not silently replaced characters.

use std::borrow::Cow;

/// Decoded name/value pairs, borrowing from the input where nothing needed decoding.
pub(crate) type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Decodes `a=1&b=x+y` into name/value pairs, in order. Empty pairs are skipped. Components
/// without escapes are borrowed from `input`, not copied.
pub(crate) fn parse(input: &[u8]) -> Result<Pairs<'_>, String> {
    // Raw (unescaped) non-UTF-8 bytes are an error; find the parameter to name it.
    let text = std::str::from_utf8(input).map_err(|_| raw_utf8_error(input))?;
    let bytes = text.as_bytes();
    let mut pairs = Vec::with_capacity(32);
    // One pass: find each `&`-separated part, its `=`, and whether either side needs decoding.
    let mut start = 0;
    while start <= bytes.len() {
        let mut end = start;
        let mut eq = None;
        let (mut name_escaped, mut value_escaped) = (false, false);
        while end < bytes.len() {
            let b = bytes[end];
            // One table look-up per byte; only the four special bytes take a branch.
            if SPECIAL[usize::from(b)] {
                match b {
                    b'&' => break,
                    b'=' if eq.is_none() => eq = Some(end),
                    b'=' => {}
                    _ if eq.is_none() => name_escaped = true,
                    _ => value_escaped = true,
                }
            }
            end += 1;
        }
        if end > start {
            let (name, value) = match eq {
                Some(i) => (&text[start..i], &text[i + 1..end]),
                None => (&text[start..end], ""),
            };
            let name = component(name, name_escaped)
                .map_err(|e| format!("parameter name `{name}`: {e}"))?;
            let value =
                component(value, value_escaped).map_err(|e| format!("parameter `{name}`: {e}"))?;
            pairs.push((name, value));
        }
        start = end + 1;
    }
    Ok(pairs)
}

/// The bytes the splitter cares about: `&`, `=`, `%`, `+`.
static SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'&' as usize] = true;
    table[b'=' as usize] = true;
    table[b'%' as usize] = true;
    table[b'+' as usize] = true;
    table
};

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
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return std::str::from_utf8(input)
            .map(Cow::Borrowed)
            .map_err(|e| format!("invalid UTF-8 (at byte {})", e.valid_up_to()));
    }
    decode_escaped(input).map(Cow::Owned)
}

fn decode_escaped(input: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = match input.get(i + 1..i + 3) {
                    Some(&[high, low]) => hex(high).zip(hex(low)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                out.push(byte.ok_or_else(|| format!("bad percent-encoding at byte {i}"))?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|e| {
        format!(
            "invalid UTF-8 after percent-decoding (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The value of one hexadecimal digit.
fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

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
}
