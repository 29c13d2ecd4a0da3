//! Realistic gtag.js hits and the exact event data each must become.

use std::cell::Cell;

use serde_json::{Value, json};

use super::{
    CLIENT_HINTS_TEXT, Pooled, SYSTEM_PROPERTIES_TEXT, SystemProperties, parse_hits, push_decimal,
};
use tagpipe_core::EventData;

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/128.0 Safari/537.36";

fn parse(query: &str, body: &str) -> Vec<Value> {
    parse_hits(
        query,
        body.as_bytes(),
        "203.0.113.7".parse().unwrap(),
        Some(UA),
        100,
    )
    .expect("valid hit")
    .into_iter()
    .map(EventData::into_value)
    .collect()
}

#[test]
fn page_view_with_consent() {
    let q = "v=2&tid=G-ABC123&gtm=45je4bk0v9&_p=1716898000000&gcs=G111&gcd=13r3r3r3r5\
             &npa=0&dma=0&cid=1234567890.1716898000&ul=en-us&sr=1920x1080\
             &uaa=x86&uab=64&uafvl=Chromium%3B128.0.6613.120%7CGoogle%2520Chrome%3B128.0.6613.120\
             &uamb=0&uam=&uap=Linux&uapv=6.5.0&uaw=0&_s=1&sid=1716898000&sct=3&seg=1\
             &dl=https%3A%2F%2Fshop.example.com%2F%3Fq%3D1&dr=https%3A%2F%2Fwww.google.com%2F\
             &dt=Example%20Shop&en=page_view&_fv=1&_ss=1&tfd=1234";
    let events = parse(q, "");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0],
        json!({
            "event_name": "page_view",
            "x-ga-protocol_version": "2",
            "x-ga-measurement_id": "G-ABC123",
            "x-ga-gtm_version": "45je4bk0v9",
            "x-ga-page_id": "1716898000000",
            "x-ga-gcs": "G111",
            "x-ga-gcd": "13r3r3r3r5",
            "x-ga-npa": "0",
            "x-ga-dma": "0",
            "x-ga-tfd": "1234",
            "x-ga-mp2-seg": "1",
            "client_id": "1234567890.1716898000",
            "language": "en-us",
            "screen_resolution": "1920x1080",
            "client_hints": {
                "architecture": "x86",
                "bitness": "64",
                "full_version_list": [
                    {"brand": "Chromium", "version": "128.0.6613.120"},
                    {"brand": "Google Chrome", "version": "128.0.6613.120"}
                ],
                "mobile": false,
                "model": "",
                "platform": "Linux",
                "platform_version": "6.5.0",
                "wow64": false
            },
            "x-ga-system_properties": {"s": "1", "fv": "1", "ss": "1"},
            "ga_session_id": "1716898000",
            "ga_session_number": 3,
            "page_location": "https://shop.example.com/?q=1",
            "page_referrer": "https://www.google.com/",
            "page_title": "Example Shop",
            "ip_override": "203.0.113.7",
            "user_agent": UA
        })
    );
}

#[test]
fn purchase_with_items_value_currency_and_user_provided_data() {
    let q = "v=2&tid=G-ABC123&cid=555.666&en=purchase&cu=EUR&epn.value=59.9&ep.transaction_id=T-1001\
             &ep.event_id=evt-42&epn.tax=4.5&up.plan=pro&upn.visits=12\
             &pr1=idSKU1~nmT-Shirt~brAcme~caApparel~c2Shirts~vaBlue~pr19.95~qt2~k0size~v0M\
             &pr2=idSKU2~nmMug~pr20~qt1~ds1.5~lp2\
             &em=tv.1~em.973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b~ph.c698c0b8~fn.abc~ct.paris~co.fr\
             &_uip=198.51.100.23&dl=https%3A%2F%2Fshop.example.com%2Fthanks";
    let events = parse(q, "");
    assert_eq!(
        events[0],
        json!({
            "event_name": "purchase",
            "x-ga-protocol_version": "2",
            "x-ga-measurement_id": "G-ABC123",
            "client_id": "555.666",
            "currency": "EUR",
            "value": 59.9,
            "transaction_id": "T-1001",
            "event_id": "evt-42",
            "tax": 4.5,
            "x-ga-mp2-user_properties": {"plan": "pro", "visits": 12},
            "items": [
                {"item_id": "SKU1", "item_name": "T-Shirt", "item_brand": "Acme",
                 "item_category": "Apparel", "item_category2": "Shirts", "item_variant": "Blue",
                 "price": 19.95, "quantity": 2, "size": "M"},
                {"item_id": "SKU2", "item_name": "Mug", "price": 20, "quantity": 1,
                 "discount": 1.5, "index": 2}
            ],
            "user_data": {
                "sha256_email_address": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
                "sha256_phone_number": "c698c0b8",
                "address": {"sha256_first_name": "abc", "city": "paris", "country": "fr"}
            },
            "ip_override": "198.51.100.23",
            "page_location": "https://shop.example.com/thanks",
            "user_agent": UA
        })
    );
}

#[test]
fn a_post_body_with_three_hits_shares_the_query() {
    let q = "v=2&tid=G-ABC123&cid=1.2&dl=https%3A%2F%2Fexample.com%2F&en=ignored";
    let body = "en=page_view&_et=10\n\nen=scroll&epn.percent_scrolled=90\r\nen=user_engagement&_et=5230&dl=https%3A%2F%2Fexample.com%2Fb\n";
    let events = parse(q, body);
    assert_eq!(events.len(), 3);
    let base = |extra: Value| {
        let mut v = json!({
            "x-ga-protocol_version": "2",
            "x-ga-measurement_id": "G-ABC123",
            "client_id": "1.2",
            "page_location": "https://example.com/",
            "ip_override": "203.0.113.7",
            "user_agent": UA
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    assert_eq!(
        events[0],
        base(json!({"event_name": "page_view", "engagement_time_msec": 10}))
    );
    assert_eq!(
        events[1],
        base(json!({"event_name": "scroll", "percent_scrolled": 90}))
    );
    assert_eq!(
        events[2],
        base(
            json!({"event_name": "user_engagement", "engagement_time_msec": 5230,
                    "page_location": "https://example.com/b"})
        )
    );
}

#[test]
fn a_hit_with_gcd_only() {
    let events = parse("v=2&tid=G-1&en=page_view&cid=9.9&gcd=13p3p3p2p5", "");
    assert_eq!(
        events[0],
        json!({
            "event_name": "page_view",
            "x-ga-protocol_version": "2",
            "x-ga-measurement_id": "G-1",
            "client_id": "9.9",
            "x-ga-gcd": "13p3p3p2p5",
            "ip_override": "203.0.113.7",
            "user_agent": UA
        })
    );
}

#[test]
fn bad_hits_are_refused_with_where() {
    let addr = "203.0.113.7".parse().unwrap();
    let err = parse_hits("v=2&tid=G-1", b"en=a\ndt=no-name\n", addr, None, 10).unwrap_err();
    assert_eq!(err, "hit 1: missing the event name (`en`)");
    let err = parse_hits("v=1&en=a", b"", addr, None, 10).unwrap_err();
    assert!(err.contains("protocol version"), "{err}");
    let err = parse_hits("en=a&dl=%E0%A4", b"", addr, None, 10).unwrap_err();
    assert!(err.starts_with("query string: parameter `dl`"), "{err}");
    let err = parse_hits("en=a", b"en=b\nen=%zz", addr, None, 10).unwrap_err();
    assert!(err.starts_with("hit 1 (body line 2)"), "{err}");
    let err = parse_hits("v=2", b"en=a\nen=b\nen=c", addr, None, 2).unwrap_err();
    assert!(err.contains("at most 2"), "{err}");
}

#[test]
fn client_addresses_are_written_as_usual() {
    for addr in [
        "0.0.0.0",
        "1.2.3.4",
        "10.20.30.40",
        "203.0.113.255",
        "100.9.99.109",
        "::1",
        "2001:db8::7",
    ] {
        let ip: std::net::IpAddr = addr.parse().unwrap();
        // After other text, as in a hit's buffer.
        let mut text = String::from("before");
        super::push_address(&mut text, ip);
        assert_eq!(text, format!("before{ip}"));
    }
}

#[test]
fn the_user_agent_header_wins_and_an_ip_override_parameter_wins() {
    // `ep.` parameters may use any name: the header's user agent still wins, while an address
    // given by the page (`ep.ip_override` here, `_uip` above) wins over the client's.
    let events = parse(
        "v=2&tid=G-1&en=page_view&ep.user_agent=from-page&ep.ip_override=198.51.100.9",
        "",
    );
    assert_eq!(events[0]["user_agent"], UA);
    assert_eq!(events[0]["ip_override"], "198.51.100.9");
    // Body hits: each hit's own parameters win over the query's, the header still last.
    let events = parse(
        "v=2&tid=G-1&en=page_view&_uip=198.51.100.1",
        "en=scroll&ep.user_agent=x\nen=click&_uip=198.51.100.2",
    );
    let got: Vec<(&Value, &Value, &Value)> = events
        .iter()
        .map(|e| (&e["event_name"], &e["ip_override"], &e["user_agent"]))
        .collect();
    assert_eq!(
        got,
        [
            (&json!("scroll"), &json!("198.51.100.1"), &json!(UA)),
            (&json!("click"), &json!("198.51.100.2"), &json!(UA)),
        ]
    );
}

/// An address given by a parameter is normalised as every source's `ip_override` is (a port
/// or brackets dropped; anything else kept as it is), by the reader itself: the hit's own
/// address is never checked.
#[test]
fn an_ip_override_parameter_with_a_port_or_brackets_becomes_the_bare_address() {
    for (parameter, expected) in [
        ("_uip=198.51.100.7%3A5678", json!("198.51.100.7")),
        (
            "ep.ip_override=%5B2001%3Adb8%3A%3A1%5D%3A80",
            json!("2001:db8::1"),
        ),
        ("ep.ip_override=%5B198.51.100.8%5D", json!("198.51.100.8")),
        ("_uip=%20198.51.100.9", json!("198.51.100.9")),
        ("_uip=198.51.100.10", json!("198.51.100.10")),
        ("_uip=2001%3Adb8%3A%3A2", json!("2001:db8::2")),
        ("_uip=not-an-address", json!("not-an-address")),
        ("epn.ip_override=5", json!(5)),
        ("ep.other=1", json!("203.0.113.7")),
    ] {
        let events = parse(&format!("v=2&tid=G-1&en=page_view&{parameter}"), "");
        assert_eq!(events[0]["ip_override"], expected, "{parameter}");
    }
    // A body hit's own parameter, and the query's for the hit without one.
    let events = parse(
        "v=2&tid=G-1&en=page_view&_uip=198.51.100.1%3A1",
        "en=scroll\nen=click&_uip=198.51.100.2%3A2",
    );
    assert_eq!(events[0]["ip_override"], "198.51.100.1");
    assert_eq!(events[1]["ip_override"], "198.51.100.2");
}

#[test]
fn a_parameter_repeated_in_one_hit_keeps_its_last_value() {
    let events = parse(
        "v=2&tid=G-1&en=first&dl=https%3A%2F%2Fa.example%2F&en=second\
         &dl=https%3A%2F%2Fb.example%2F&ep.x=1&ep.x=2",
        "",
    );
    assert_eq!(events[0]["event_name"], "second");
    assert_eq!(events[0]["page_location"], "https://b.example/");
    assert_eq!(events[0]["x"], "2");
}

#[test]
fn slot_names_are_in_event_data_order() {
    let names = super::Known::NAMES;
    // Strictly: a repeated name would also break the slots.
    assert!(names.is_sorted_by(|a, b| a < b), "{names:?}");
    for (position, name) in names.iter().enumerate() {
        assert_eq!(super::Known::of(name), Some(position), "{name}");
    }
}

/// Known names fill slots, other names are inserted at the end: whatever the mix and order of
/// parameters (table names, `ep.` names equal to table names, unmapped ones, repeats), the event
/// data must be what inserting every field in parameter order gives, serialised byte for byte.
#[test]
fn any_mix_of_parameters_gives_what_inserting_in_order_gives() {
    // (parameter, the event-data name it sets)
    let params: &[(&str, &str)] = &[
        ("dl", "page_location"),
        ("ep.page_location", "page_location"),
        ("ep.event_name", "event_name"),
        ("en", "event_name"),
        ("_uip", "ip_override"),
        ("ep.ip_override", "ip_override"),
        ("gcs", "x-ga-gcs"),
        ("ep.x-ga-gcs", "x-ga-gcs"),
        ("foo", "x-ga-foo"),
        ("ep.x-ga-foo", "x-ga-foo"),
        ("ep.alpha", "alpha"),
        ("ep.zeta", "zeta"),
        ("ep.user_agent", "user_agent"),
        ("ep.page_locatio", "page_locatio"),
        ("ep.page_location_2", "page_location_2"),
        ("ep.a", "a"),
        ("ep.~", "~"),
    ];
    let mut random = tagpipe_core::random::Repeatable::new(0x5EED_0003);
    for round in 0..2000 {
        let mut query = String::from("v=2&en=first");
        let mut expected = serde_json::Map::new();
        expected.insert("ip_override".into(), json!("203.0.113.7"));
        expected.insert("x-ga-protocol_version".into(), json!("2"));
        expected.insert("event_name".into(), json!("first"));
        for i in 0..random.below(12) {
            let (param, name) = params[random.below(params.len())];
            let value = format!("v{round}-{i}");
            query.extend(["&", param, "=", &value]);
            expected.insert(name.into(), Value::String(value));
        }
        let event = parse_hits(&query, b"", "203.0.113.7".parse().unwrap(), None, 10)
            .expect("valid hit")
            .remove(0);
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            serde_json::to_string(&expected).unwrap(),
            "{query}"
        );
        // Look-ups (binary searches) find every field.
        for (name, value) in &expected {
            assert_eq!(event.get(name), Some(value), "{name} in {query}");
        }
    }
}

#[test]
fn full_version_lists_split_on_the_last_semicolon_and_skip_empty_entries() {
    assert_eq!(
        super::full_version_list("A;1||B%20C;2|D|X;Y;3|"),
        json!([
            {"brand": "A", "version": "1"},
            {"brand": "B C", "version": "2"},
            {"brand": "D", "version": ""},
            {"brand": "X;Y", "version": "3"},
        ])
    );
    assert_eq!(super::full_version_list(""), json!([]));
    assert_eq!(super::full_version_list("|"), json!([]));
    // A brand whose escape is broken stays as sent.
    assert_eq!(
        super::full_version_list("B%2;1"),
        json!([{"brand": "B%2", "version": "1"}])
    );
}

/// The client hints' text form reads back exactly what was pushed, whatever the values hold
/// (digits, the `:` separator, multi-byte characters, empty values, repeats: the last wins).
#[test]
fn client_hints_text_reads_back_every_value() {
    use super::ClientHints;
    let long = "Brand;1.2|".repeat(13);
    let values = [
        "",
        "x86",
        "1:2:3",
        "9",
        "Ünïcode ✓",
        "12:",
        ":",
        "?1",
        "0",
        &long,
    ];
    let mut random = tagpipe_core::random::Repeatable::new(0x5EED_0004);
    for _ in 0..500 {
        let mut hints = ClientHints(Pooled::take(&CLIENT_HINTS_TEXT));
        let mut expected = serde_json::Map::new();
        for _ in 0..random.below(12) {
            let index = random.below(ClientHints::PARAMETERS.len());
            let value = values[random.below(values.len())];
            hints.push(index, value);
            let (parameter, name) = ClientHints::PARAMETERS[index];
            let built = match parameter {
                "uamb" | "uaw" => Value::Bool(value == "1" || value == "?1"),
                "uafvl" => super::full_version_list(value),
                _ => Value::String(value.to_owned()),
            };
            expected.insert(name.to_owned(), built);
        }
        let text = hints.0.to_string();
        assert_eq!(
            ClientHints::build(&hints.0),
            Value::Object(expected),
            "{text:?}"
        );
    }
    // Fixed cases, spelled out.
    let mut hints = ClientHints(Pooled::take(&CLIENT_HINTS_TEXT));
    hints.push(0, "x86");
    hints.push(3, "?1");
    hints.push(2, "A;1|B%20C;2");
    hints.push(7, "0");
    hints.push(0, "arm");
    assert_eq!(*hints.0, "03:x8632:?1211:A;1|B%20C;271:003:arm");
    assert_eq!(
        ClientHints::build(&hints.0),
        json!({
            "architecture": "arm",
            "full_version_list": [
                {"brand": "A", "version": "1"},
                {"brand": "B C", "version": "2"}
            ],
            "mobile": true,
            "wow64": false
        })
    );
    // Text this module did not write ends the read where it stops making sense.
    for broken in ["9", "8:x", "03:ab", "0x:a", "12", "0", "01:é"] {
        assert_eq!(ClientHints::build(broken), json!({}), "{broken:?}");
    }
    assert_eq!(
        ClientHints::build("02:x86ZZ"),
        json!({"architecture": "x8"})
    );
}

/// A hit's `client_hints` (kept as text until read; `EventData`'s own tests check that a pass
/// over the other fields builds nothing) read after such a pass is the whole object.
#[test]
fn client_hints_read_whole_after_a_pass_that_skips_them() {
    let q = "v=2&en=page_view&uaa=arm&uamb=%3F1&uafvl=A%3B1%7CB%3B2&uap=Android";
    let event = parse_hits(q, b"", "203.0.113.7".parse().unwrap(), None, 1)
        .expect("valid hit")
        .remove(0);
    for field in event.fields() {
        if field.name() != "client_hints" {
            let _ = field.value();
        }
    }
    let hints = event.get("client_hints").expect("client hints");
    assert_eq!(
        hints,
        &json!({
            "architecture": "arm",
            "mobile": true,
            "full_version_list": [
                {"brand": "A", "version": "1"},
                {"brand": "B", "version": "2"}
            ],
            "platform": "Android"
        })
    );
}

#[test]
fn decimal_digits_are_written_as_display_writes_them() {
    for n in (0..2_000).chain([9_999, 10_000, 65_535, 1_000_000]) {
        let mut out = String::from("x");
        push_decimal(&mut out, n);
        assert_eq!(out, format!("x{n}"));
    }
}

/// A hit's string parameters are kept as text in the event's one buffer (no `String` each) and
/// its numbers as numbers; readers of values see ordinary strings.
#[test]
fn string_parameters_are_kept_as_text() {
    use tagpipe_core::event_data::ValueRef;
    let q = "v=2&en=purchase&dl=https%3A%2F%2Fe.com%2F&epn.value=59.9&ep.transaction_id=T-1&sct=3";
    let event = parse_hits(q, b"", "203.0.113.7".parse().unwrap(), Some("UA/1"), 1)
        .expect("valid hit")
        .remove(0);
    for name in [
        "event_name",
        "page_location",
        "transaction_id",
        "ip_override",
        "user_agent",
    ] {
        assert!(
            matches!(event.get_ref(name), Some(ValueRef::Str(_))),
            "{name}: {:?}",
            event.get_ref(name)
        );
    }
    assert_eq!(event.get_str("page_location"), Some("https://e.com/"));
    assert_eq!(event.get_str("ip_override"), Some("203.0.113.7"));
    assert_eq!(event.get("value"), Some(&json!(59.9)));
    assert_eq!(event.get("ga_session_number"), Some(&json!(3)));
    assert_eq!(event.get("transaction_id"), Some(&json!("T-1")));
}

/// System properties read back as they were pushed: any name and value (a later one of a name
/// wins), each a string; text this module did not write ends the read where it stops.
#[test]
fn system_properties_round_trip_through_their_text_form() {
    let parts = [
        "",
        "s",
        "ss",
        "2",
        "1:2",
        ":",
        "9:",
        "Ünïcode ✓",
        "12",
        "a:b:c",
    ];
    let mut random = tagpipe_core::random::Repeatable::new(0x5EED_0005);
    for _ in 0..500 {
        let mut properties = SystemProperties(Pooled::take(&SYSTEM_PROPERTIES_TEXT));
        let mut expected = serde_json::Map::new();
        for _ in 0..random.below(6) {
            let name = parts[random.below(parts.len())];
            let value = parts[random.below(parts.len())];
            properties.push(name, value);
            expected.insert(name.to_owned(), Value::from(value));
        }
        assert_eq!(
            SystemProperties::build(&properties.0),
            Value::Object(expected),
            "{:?}",
            *properties.0
        );
    }
    let mut properties = SystemProperties(Pooled::take(&SYSTEM_PROPERTIES_TEXT));
    properties.push("s", "2");
    properties.push("ss", "1");
    properties.push("s", "3");
    assert_eq!(*properties.0, "1:s1:22:ss1:11:s1:3");
    assert_eq!(
        SystemProperties::build(&properties.0),
        json!({"s": "3", "ss": "1"})
    );
    for broken in ["9", "1:s", "1:s9:x", "x:s", "2:é"] {
        assert_eq!(SystemProperties::build(broken), json!({}), "{broken:?}");
    }
    assert_eq!(SystemProperties::build("1:s1:2junk"), json!({"s": "2"}));
}

/// A thread's pooled buffer comes back empty with its room; a second reader at the same time
/// gets a buffer of its own; one grown past what is kept is freed.
#[test]
fn pooled_text_is_reused_by_the_next_hit_on_the_thread() {
    thread_local! {
        static POOL: Cell<String> = const { Cell::new(String::new()) };
    }
    let mut first = Pooled::take(&POOL);
    first.push_str("hint text");
    let room = first.capacity();
    let second = Pooled::take(&POOL);
    assert_eq!(second.capacity(), 0, "the pool's buffer is in use");
    drop(second);
    drop(first);
    let again = Pooled::take(&POOL);
    assert!(again.is_empty());
    assert_eq!(again.capacity(), room);
    drop(again);
    let mut large = Pooled::take(&POOL);
    large.reserve(Pooled::KEPT + 1);
    drop(large);
    assert_eq!(
        Pooled::take(&POOL).capacity(),
        0,
        "a large buffer is not kept"
    );
}

/// A hit's client hints and system properties go with that hit alone: the next hit read on the
/// thread (its buffers reused) has none of its own unless it sends them.
#[test]
fn the_next_hit_has_no_client_hints_or_system_properties_of_the_one_before() {
    let events = parse(
        "v=2&tid=G-1",
        "en=first&uaa=x86&uamb=%3F1&_s=3&_ss=1\nen=second\nen=third&uap=Linux&_fv=1",
    );
    assert_eq!(
        events[0]["client_hints"],
        json!({"architecture": "x86", "mobile": true})
    );
    assert_eq!(
        events[0]["x-ga-system_properties"],
        json!({"s": "3", "ss": "1"})
    );
    assert_eq!(events[1].get("client_hints"), None);
    assert_eq!(events[1].get("x-ga-system_properties"), None);
    assert_eq!(events[2]["client_hints"], json!({"platform": "Linux"}));
    assert_eq!(events[2]["x-ga-system_properties"], json!({"fv": "1"}));
    let again = parse("v=2&tid=G-1&en=alone", "");
    assert_eq!(again[0].get("client_hints"), None);
    assert_eq!(again[0].get("x-ga-system_properties"), None);
}

/// Any `_x` name, however odd, becomes a system property as a map insert would make it: the
/// name after `_` (empty, escaped, digits, non-ASCII), a later value of a name winning.
#[test]
fn odd_system_property_names_are_kept_as_they_were_sent() {
    let events = parse(
        "v=2&tid=G-1&en=page_view&_=v&_a%3Ab=1&_1=2&_%C3%BC=x&_s=1&_s=2&_%31%3A=3",
        "",
    );
    assert_eq!(
        events[0]["x-ga-system_properties"],
        json!({"": "v", "a:b": "1", "1": "2", "\u{fc}": "x", "s": "2", "1:": "3"})
    );
}
