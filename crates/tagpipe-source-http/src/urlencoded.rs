//! Strict `application/x-www-form-urlencoded` decoding: bad percent-encoding and invalid UTF-8
//! are errors that say where, not silently replaced characters.

/// Decodes `a=1&b=x+y` into name/value pairs, in order. Empty pairs are skipped.
pub(crate) fn parse(input: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in input.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let name = decode(name).map_err(|e| format!("parameter name `{}`: {e}", lossy(name)))?;
        let value = decode(value).map_err(|e| format!("parameter `{name}`: {e}"))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Percent-decodes one component (`+` is a space).
pub(crate) fn decode(input: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding at byte {i}"))?;
                out.push(hex);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(
            parse(b"a=1&b=x+y%21&&c").unwrap(),
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y!".into()),
                ("c".into(), String::new())
            ]
        );
        assert_eq!(parse(b"dl=https%3A%2F%2Fe.com%2F%C3%A9").unwrap()[0].1, "https://e.com/é");
        assert!(parse(b"a=%zz").unwrap_err().contains("bad percent-encoding"));
        assert!(parse(b"a=%4").is_err());
        assert!(parse(b"a=%ff%fe").unwrap_err().contains("invalid UTF-8"));
        assert!(parse(b"a=\xff").unwrap_err().contains("invalid UTF-8"));
    }
}
