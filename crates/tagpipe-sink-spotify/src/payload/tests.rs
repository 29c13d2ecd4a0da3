//! The payload rules that the end-to-end vectors exercise, at unit level, plus the corrections.

use std::borrow::Cow;

use serde_json::{Value, json};
use tagpipe_core::{EventData, RequestContext};

use super::{Built, Member, Object, build};
use crate::config::SpotifySinkConfig;

fn config(extra: Value) -> SpotifySinkConfig {
    let mut base = json!({"auth_token": "t", "connection_id": "c"});
    base.as_object_mut().unwrap().extend(data(extra).into_map());
    serde_json::from_value(base).unwrap()
}

fn data(v: Value) -> EventData {
    EventData::try_from(v).expect("test data is an object")
}

fn sent(event: Value, cfg: &SpotifySinkConfig) -> Value {
    match build(
        &data(event),
        &RequestContext::detached(),
        cfg,
        1_747_945_830_456,
    ) {
        Built::Send(v) => v.to_value(),
        other => panic!("not sent: {other:?}"),
    }
}

#[test]
fn email_only_events_are_sent() {
    let cfg = config(json!({"derive_event_id": false}));
    let v = sent(
        json!({"event_name": "Sign_Up", "user_data": {"email_address": "  New.User@Example.COM "}}),
        &cfg,
    );
    assert_eq!(
        v,
        json!({"event_name": "Sign_Up", "event_time": "2025-05-22T20:30:30.456Z", "event_details": {},
               "user_data": {"hashed_emails": ["2c7cc554b2e165896c7d52d910ca10169703eec7ea71e2462ceac8540981f5da"]}})
    );
}

#[test]
fn numeric_amounts_are_numbers_and_settings_override() {
    let cfg = config(json!({
        "event_details": {"amount": "123", "content_name": "foobar"},
        "user_data": {"hashed_emails": "test@example.com", "hashed_phone_number": "+55 19 9-9999-9999"},
        "server_event_data": {"event_time": "1748369212323", "event_id": "foobar", "event_source_url": "https://example.com"}
    }));
    let v = sent(
        json!({"event_name": "Page_View", "value": "9.5", "ip_override": "1.2.3.4",
                        "page_location": "https://other.example"}),
        &cfg,
    );
    assert_eq!(
        v["event_details"],
        json!({"amount": 123, "content_name": "foobar"})
    );
    assert_eq!(v["event_time"], "2025-05-27T18:06:52.323Z");
    assert_eq!(v["event_id"], "foobar");
    assert_eq!(v["event_source_url"], "https://example.com");
    assert_eq!(
        v["user_data"]["hashed_emails"],
        json!(["973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"])
    );
    assert_eq!(
        v["user_data"]["hashed_phone_number"],
        "c698c0b85d32cbcf5033ada58f34de87d4f7415efaf5a8d1c1e9e63393dcc85e"
    );
}

#[test]
fn skips_and_failures_say_why() {
    let cfg = config(json!({}));
    let cx = RequestContext::detached();
    let debug_hit = data(
        json!({"event_name": "x", "ip_override": "1.1.1.1", "page_location": "https://gtm-msr.appspot.com/render"}),
    );
    assert!(matches!(build(&debug_hit, &cx, &cfg, 0), Built::Skip(r) if r.contains("gtm-msr")));
    let anonymous =
        data(json!({"event_name": "purchase", "user_data": {"email_address": "undefined"}}));
    assert!(
        matches!(build(&anonymous, &cx, &cfg, 0), Built::Fail(r) if r.contains("no user identifier"))
    );
    let nameless = data(json!({"ip_override": "1.1.1.1"}));
    assert!(matches!(build(&nameless, &cx, &cfg, 0), Built::Fail(r) if r.contains("event_name")));
}

#[test]
fn derived_event_ids_are_stable_and_distinct() {
    let cfg = config(json!({}));
    let e = json!({"event_name": "purchase", "client_id": "1.2", "timestamp": 1_748_377_016, "ip_override": "1.1.1.1"});
    let a = sent(e.clone(), &cfg)["event_id"].clone();
    let b = sent(e, &cfg)["event_id"].clone();
    assert_eq!(a, b, "the same event gets the same id");
    let c = sent(json!({"event_name": "purchase", "client_id": "1.3", "timestamp": 1_748_377_016, "ip_override": "1.1.1.1"}), &cfg)["event_id"].clone();
    assert_ne!(a, c);
    assert_eq!(a.as_str().unwrap().len(), 32);
}

#[test]
fn device_ids_come_from_settings_before_the_processor_field() {
    let cfg = config(json!({}));
    let v = sent(
        json!({"event_name": "x", "x-spotify-device_id": "abc"}),
        &cfg,
    );
    assert_eq!(v["user_data"]["device_id"], "abc");
    let cfg = config(json!({"user_data": {"device_id": "from-settings"}}));
    let v = sent(
        json!({"event_name": "x", "x-spotify-device_id": "abc"}),
        &cfg,
    );
    assert_eq!(v["user_data"]["device_id"], "from-settings");
}

#[test]
fn the_typed_event_serialises_as_the_tags_json_object() {
    // Every optional field present, then none: the bytes equal those of the same event as a
    // JSON object (keys in alphabetical order, absent fields left out, `opt_out_targeting`
    // only when true).
    let full = config(json!({"action_source": "WEB", "opt_out_targeting": true}));
    let bare = config(json!({"derive_event_id": false}));
    for cfg in [&full, &bare] {
        let event = data(json!({"event_name": "purchase", "ip_override": "1.1.1.1",
            "page_location": "https://shop.example/", "value": 5, "currency": "EUR"}));
        let Built::Send(capi) = build(&event, &RequestContext::detached(), cfg, 0) else {
            panic!("not sent");
        };
        let direct = serde_json::to_string(&capi).unwrap();
        assert_eq!(direct, capi.to_value().to_string());
        let mut written = Vec::new();
        capi.write_json(&mut written);
        assert_eq!(String::from_utf8(written).unwrap(), direct);
        let v = capi.to_value();
        assert_eq!(v.get("opt_out_targeting").is_some(), cfg.opt_out_targeting);
        assert_eq!(
            v.get("action_source").is_some(),
            cfg.action_source.is_some()
        );
        assert_eq!(v.get("event_id").is_some(), cfg.derive_event_id);
    }
}

#[test]
fn derived_event_ids_hash_the_documented_fields() {
    use sha2::{Digest, Sha256};
    let cfg = config(json!({}));
    let v = sent(
        json!({"event_name": "purchase", "client_id": "1.2", "timestamp": 1_748_377_016,
               "ip_override": "1.1.1.1", "transaction_id": 42, "page_location": null}),
        &cfg,
    );
    // client_id, name, time, page_location, unique_event_id, transaction_id, x-ga-page_id,
    // each followed by 0x1f; numbers as JSON text, null and missing as nothing.
    let digest = Sha256::digest(
        "1.2\u{1f}purchase\u{1f}2025-05-27T20:16:56.000Z\u{1f}\u{1f}\u{1f}42\u{1f}\u{1f}",
    );
    let expected = lower_hex(&digest[..16]);
    assert_eq!(v["event_id"], expected.as_str());
}

#[test]
fn objects_keep_key_order_and_one_member_per_key() {
    use std::borrow::Cow;

    use super::{Member, Object};
    let mut object = Object::default();
    for key in ["zeta", "amount", "currency", "b", "amount"] {
        object.insert(key, Member::Text(Cow::Borrowed(key)));
    }
    object.insert("b", Member::Value(Cow::Owned(json!(2))));
    assert_eq!(
        serde_json::to_string(&object).unwrap(),
        r#"{"amount":"amount","b":2,"currency":"currency","zeta":"zeta"}"#
    );
    assert!(object.remove("currency").is_some());
    assert!(object.remove("currency").is_none());
    assert!(!object.contains_key("currency"));
    assert_eq!(
        serde_json::to_string(&object).unwrap(),
        r#"{"amount":"amount","b":2,"zeta":"zeta"}"#
    );

    // In key order (each pushed after the last), then the last key again: replaced, not added.
    let mut ordered = Object::default();
    for key in ["amount", "currency", "zeta", "zeta"] {
        ordered.insert(key, Member::Text(Cow::Borrowed(key)));
    }
    ordered.insert("zeta", Member::Value(Cow::Owned(json!(3))));
    assert_eq!(
        serde_json::to_string(&ordered).unwrap(),
        r#"{"amount":"amount","currency":"currency","zeta":3}"#
    );
}

/// Bytes as lower-case hex, written independently of the code under test.
fn lower_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::new(), |s, b| s + &format!("{b:02x}"))
}

/// The lower-case hex SHA-256 of `text`.
fn sha256_hex_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    lower_hex(&Sha256::digest(text.as_bytes()))
}

#[test]
fn email_lists_and_phone_lists_keep_only_given_entries() {
    let cfg = config(json!({"derive_event_id": false}));
    let v = sent(
        json!({"event_name": "purchase",
               "email": ["X@Example.com ", "undefined", null, {"nested": 1}],
               "phone": ["", "+1 (555) 010-0000"]}),
        &cfg,
    );
    // Absent-looking list entries go; a non-string entry is hashed as its JSON text.
    assert_eq!(
        v["user_data"]["hashed_emails"],
        json!([
            sha256_hex_of("x@example.com"),
            sha256_hex_of("{\"nested\":1}")
        ])
    );
    // The first given phone of a list, without spaces, `-`, `(`, `)`; the `+` stays.
    assert_eq!(
        v["user_data"]["hashed_phone_number"],
        json!(sha256_hex_of("+15550100000"))
    );
}

#[test]
fn settings_override_emails_phone_and_amount_by_the_same_rules() {
    let cfg = config(json!({"derive_event_id": false,
        "user_data": {"hashed_emails": {"work": " A@Example.com ", "home": "undefined"},
                      "hashed_phone_number": ["+1 555", "+1 666"]},
        "event_details": {"amount": "12.50", "currency": 978}}));
    let v = sent(
        json!({"event_name": "purchase", "email": "ignored@example.com",
               "phone": "+1 777", "value": 3, "currency": "EUR"}),
        &cfg,
    );
    // An object's values are the emails; absent-looking ones go.
    assert_eq!(
        v["user_data"]["hashed_emails"],
        json!([sha256_hex_of("a@example.com")])
    );
    // A phone list from the settings is taken whole, as its JSON text (the tag does the same).
    assert_eq!(
        v["user_data"]["hashed_phone_number"],
        json!(sha256_hex_of("[\"+1555\",\"+1666\"]"))
    );
    // A numeric-text amount becomes a number; other details are kept as given.
    assert_eq!(v["event_details"], json!({"amount": 12.5, "currency": 978}));
}

/// The hand-written JSON is byte for byte what `serde_json` writes for the same event, whatever
/// the strings hold (escapes, control characters, non-ASCII) and whichever members are set.
#[test]
fn the_written_json_is_serde_jsons_for_any_event() {
    let mut random = tagpipe_core::random::Repeatable::new(0x5EED_0C0A);
    let pieces = [
        "a",
        "Z",
        "/",
        "?",
        "&",
        "é",
        "漢",
        "😀",
        "\"",
        "\\",
        "\n",
        "\t",
        "\u{1}",
        "\u{7f}",
        " ",
        "x@y.z",
        "+49 (0) 30",
    ];
    let text = |random: &mut tagpipe_core::random::Repeatable| -> String {
        (0..random.below(12))
            .map(|_| pieces[random.below(pieces.len())])
            .collect()
    };
    let mut compared = 0;
    let mut escaped_names = 0;
    for round in 0..400 {
        let cfg = config(json!({
            "derive_event_id": round % 2 == 0,
            "opt_out_targeting": round % 3 == 0,
            "event_details": {"content_name": text(&mut random), "extra": {"n": [1, text(&mut random)]}},
        }));
        let mut event = json!({"event_name": format!("purchase{}", text(&mut random)),
            "ip_override": "203.0.113.7", "user_agent": text(&mut random),
            "page_location": format!("https://e.com/{}", text(&mut random)),
            "value": random.below(1000), "currency": text(&mut random),
            "user_data": {"email_address": [text(&mut random), text(&mut random)],
                          "phone_number": text(&mut random)}});
        if round % 5 == 0 {
            event["event_id"] = json!(text(&mut random));
        }
        let event = data(event);
        let Built::Send(capi) = build(&event, &RequestContext::detached(), &cfg, 0) else {
            continue;
        };
        let mut written = Vec::new();
        let name = capi.write_json(&mut written);
        assert_eq!(written, serde_json::to_vec(&capi).unwrap());
        // Where the name is, when it went in unescaped (which it does exactly when its JSON
        // string is the name between quotes).
        let verbatim =
            serde_json::to_string(&capi.event_name).unwrap() == format!("\"{}\"", capi.event_name);
        match name {
            Some(range) => assert_eq!(&written[range], capi.event_name.as_bytes()),
            None => assert!(!verbatim, "{}", capi.event_name),
        }
        escaped_names += usize::from(!verbatim);
        compared += 1;
    }
    assert!(compared > 300, "{compared} events compared");
    assert!(escaped_names > 0, "no name needed escaping");
}

/// A GA4 hit's strings are kept as text in its event data; the payload reads them as text and
/// makes the same CAPI event as from the same event data held as JSON values.
#[test]
fn a_parsed_ga4_hit_gives_the_payload_of_its_json() {
    let query = format!(
        "{}&_uip=198.51.100.4&ep.event_time=1748369212&ep.user_data.email_address=Jane%40Example.com&ep.x=",
        include_str!("../../../../tests/fixtures/ga4-purchase-hit.query")
    );
    let parsed = tagpipe_source_http::ga4::parse_hits(
        &query,
        b"",
        "203.0.113.7".parse().unwrap(),
        Some("Mozilla/5.0"),
        1,
    )
    .unwrap()
    .remove(0);
    assert_eq!(
        parsed
            .get_ref("currency")
            .and_then(tagpipe_core::event_data::ValueRef::as_value),
        None,
        "kept as text"
    );
    let as_json = data(parsed.to_value());
    for cfg in [
        config(json!({})),
        config(json!({"event_details": {"content_category": "shop"}})),
    ] {
        let context = RequestContext::detached();
        let built = |d: &EventData| match build(d, &context, &cfg, 1_747_945_830_456) {
            Built::Send(v) => v.to_value(),
            other => panic!("not sent: {other:?}"),
        };
        let from_text = built(&parsed);
        assert_eq!(from_text, built(&as_json));
        assert_eq!(from_text["event_details"]["amount"], json!(59.9));
        assert_eq!(from_text["user_data"]["ip_address"], "198.51.100.4");
    }
}

/// Past the members kept inline, an object spills to the heap and still keeps its members in
/// key order, replaces a key it has and removes one.
#[test]
fn an_object_with_more_members_than_it_keeps_inline_stays_in_key_order() {
    let mut object = Object::default();
    let keys = ["g", "c", "a", "f", "b", "e", "d"];
    for (i, key) in keys.into_iter().enumerate() {
        object.insert(key, Member::Value(Cow::Owned(json!(i))));
    }
    object.insert("c", Member::Text(Cow::Borrowed("replaced")));
    assert_eq!(
        object.remove("e"),
        Some(Member::Value(Cow::Owned(json!(5))))
    );
    assert!(!object.contains_key("e"));
    assert!(object.contains_key("g"));
    let value = serde_json::to_value(&object).unwrap();
    assert_eq!(
        value,
        json!({"a": 2, "b": 4, "c": "replaced", "d": 6, "f": 3, "g": 0})
    );
    let mut written = Vec::new();
    object.write_json(&mut written);
    assert_eq!(
        String::from_utf8(written).unwrap(),
        r#"{"a":2,"b":4,"c":"replaced","d":6,"f":3,"g":0}"#
    );
}
