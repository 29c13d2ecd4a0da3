//! Property tests over the parsers (the stable toolchain has no libFuzzer): many thousands of
//! generated and mutated inputs — seeded, so a failure reproduces — must each end in `Ok` or a
//! clear error, never a panic. A crash found here becomes a fixed case in `REGRESSIONS`.

use tagpipe_core::random::Repeatable as Rng;

use crate::{data_client, events, ga4};

/// Realistic seeds to mutate.
const SEEDS: &[&[u8]] = &[
    b"v=2&tid=G-1&cid=1.2&en=purchase&cu=EUR&epn.value=9.5&pr1=idA~nmB~pr9.5~qt2~k0c~v0d&em=tv.1~em.ab~ph.cd&uafvl=A%3B1%7CB%3B2",
    b"en=page_view&_et=10\nen=scroll&epn.percent_scrolled=90\n",
    br#"{"event_name":"purchase","items":[{"item_id":"a","price":1}],"user_data":{"email":"x@y.z"}}"#,
    br#"[{"a":1},{"b":[1,2,{"c":null}]}]"#,
    b"[ {\"v\":1e308,\"w\":-0.5e-3} ,\n{\"s\":\"\\u00e9\\ud83d\\ude00\"},{\"t\":[true,false,null]} ]",
    b"eventName=a&items.0.item_id=b&items.1.price=2&user_data.email=e",
    b"dtdc=eyJldmVudF9uYW1lIjoiYSJ9&x=1",
];

/// Inputs that once broke a parser (none so far), kept so they stay fixed, and inputs that pin
/// a property the fuzzing checks (commented).
const REGRESSIONS: &[&[u8]] = &[
    // What the events endpoint's checking pass must refuse or accept exactly as decoding does.
    br#"[{"a":-1e400}]"#,
    br#"[{"\ud800":1}]"#,
    br#"[{"a":{"$serde_json::private::RawValue":"[1"}}]"#,
    b"pr0=id",
    b"items.1.x=1",
    b"a.=1",
    b"%",
    b"=&=&",
    b"pr99999999999999999999=x",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(8) {
        let at = if v.is_empty() { 0 } else { rng.below(v.len()) };
        match rng.below(6) {
            0 if !v.is_empty() => {
                v[at] = (rng.next_u64() & 0xff) as u8;
            }
            1 => v.insert(at, b"%&=.~[]{}\"\\\n\xff\x00"[rng.below(14)]),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            3 => v.truncate(at),
            4 => {
                let dup = v[at..].to_vec();
                v.extend_from_slice(&dup[..dup.len().min(64)]);
            }
            _ => v.extend_from_slice(&(rng.next_u64()).to_le_bytes()),
        }
    }
    v
}

fn exercise(input: &[u8]) {
    let addr = "198.51.100.1".parse().expect("valid address");
    // A request's query is text (its URI was checked), its body any bytes.
    let query = String::from_utf8_lossy(input);
    let _ = ga4::parse_hits(&query, input, addr, Some("UA"), 50);
    let _ = ga4::parse_hits(&query, b"", addr, None, 50);
    for framing in [events::Framing::Json, events::Framing::Ndjson] {
        // What the checking pass accepts, decoding reads: no accepted event is lost.
        if let Ok(batch) = events::parse(input, framing, 50) {
            let accepted = batch.len();
            assert_eq!(batch.events().count(), accepted, "{framing:?} {input:?}");
        }
    }
    // An array body is accepted exactly when it decodes as an array of objects.
    if let Ok(text) = std::str::from_utf8(input)
        && text.trim_start().starts_with('[')
    {
        let decoded = serde_json::from_str::<Vec<serde_json::Map<String, serde_json::Value>>>(text);
        let parsed = events::parse(input, events::Framing::Json, usize::MAX);
        assert_eq!(
            decoded.as_ref().map(Vec::len).ok(),
            parsed.as_ref().map(events::Batch::len).ok(),
            "{text:?}"
        );
    }
    for media in [
        None,
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        let _ = data_client::parse(false, input, input, media, true, 50);
        let _ = data_client::parse(true, input, b"", media, true, 50);
    }
}

#[test]
fn parsers_never_panic_on_mutated_input() {
    let mut rng = Rng::new(0x5EED_7A61_9E37_79B9);
    for case in REGRESSIONS {
        exercise(case);
    }
    for i in 0..20_000 {
        let seed = SEEDS[i % SEEDS.len()];
        exercise(&mutate(&mut rng, seed));
    }
}

#[test]
fn parsers_never_panic_on_random_bytes() {
    let mut rng = Rng::new(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..10_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next_u64() & 0xff) as u8).collect();
        exercise(&bytes);
    }
}
