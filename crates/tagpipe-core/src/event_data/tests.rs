use serde_json::{Map, Value, json};

use super::{Deferred, EventData, FieldRef, Key, SlotBuilder, SlotTable, ValueRef};

fn map_of(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("an object"),
    }
}

#[test]
fn fields_from_any_order_are_sorted_and_the_last_repeat_wins() {
    let data = EventData::from_iter(vec![
        (Key::Borrowed("page_location"), json!("a")),
        (Key::Owned("client_id".into()), json!("c")),
        (Key::Borrowed("event_name"), json!("first")),
        (Key::Borrowed("x-ga-gcs"), json!("G111")),
        (Key::Borrowed("event_name"), json!("second")),
        (Key::Borrowed("a"), json!(1)),
    ]);
    let keys: Vec<&str> = data.keys().collect();
    assert_eq!(
        keys,
        ["a", "client_id", "event_name", "page_location", "x-ga-gcs"]
    );
    assert_eq!(data["event_name"], json!("second"));
    assert_eq!(data.len(), 5);
}

#[test]
fn behaves_like_a_json_map_for_every_operation() {
    // The same operations on serde_json's map and on EventData give the same object.
    let mut map = Map::new();
    let mut data = EventData::new();
    let ops: Vec<(&str, Option<Value>)> = vec![
        ("m", Some(json!(1))),
        ("b", Some(json!("x"))),
        ("z", Some(json!([1, 2]))),
        ("b", Some(json!("y"))),
        ("m", None),
        ("q", None),
        ("a", Some(json!({"k": true}))),
        ("é", Some(json!(null))),
        ("B", Some(json!(2))),
    ];
    for (key, op) in ops {
        match op {
            Some(v) => assert_eq!(map.insert(key.into(), v.clone()), data.insert(key, v)),
            None => assert_eq!(map.remove(key), data.remove(key)),
        }
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&data).unwrap()
        );
        assert_eq!(map.len(), data.len());
    }
    for key in ["a", "b", "B", "m", "q", "z", "é", ""] {
        assert_eq!(map.get(key), data.get(key), "{key}");
        assert_eq!(map.contains_key(key), data.contains_key(key), "{key}");
    }
    assert_eq!(Value::Object(map.clone()), data.to_value());
    assert_eq!(EventData::from(map), data);
}

#[test]
fn json_round_trip_keeps_key_order_and_last_duplicate() {
    let text = r#"{"z":1,"event_name":"purchase","user_data":{"b":1,"a":2},"a":[1],"z":2}"#;
    let data: EventData = serde_json::from_str(text).unwrap();
    assert_eq!(
        serde_json::to_string(&data).unwrap(),
        r#"{"a":[1],"event_name":"purchase","user_data":{"a":2,"b":1},"z":2}"#
    );
    let as_map: Map<String, Value> = serde_json::from_str(text).unwrap();
    assert_eq!(data.clone().into_map(), as_map);
    let err = serde_json::from_str::<EventData>("[1]").unwrap_err();
    assert!(err.to_string().contains("a JSON object"), "{err}");
}

#[test]
fn get_mut_get_or_insert_and_retain_change_in_place() {
    let mut data: EventData = map_of(json!({"a": 1, "b": 2, "c": 3})).into();
    *data.get_mut("b").unwrap() = json!(20);
    data.get_or_insert_with("d", || json!([]))
        .as_array_mut()
        .unwrap()
        .push(json!(4));
    data.get_or_insert_with("d", || json!("never"))
        .as_array_mut()
        .unwrap()
        .push(json!(5));
    data.retain(|k, _| k != "a");
    for v in data.values_mut() {
        if let Some(n) = v.as_i64() {
            *v = json!(n + 1);
        }
    }
    assert_eq!(data.to_value(), json!({"b": 21, "c": 4, "d": [4, 5]}));
    assert_eq!(data["missing"], Value::Null);
    let pairs: Vec<(&str, &Value)> = data.iter().collect();
    assert_eq!(pairs[0], ("b", &json!(21)));
}

#[test]
fn debug_lists_fields_like_a_map() {
    let data: EventData = [("b", json!(1)), ("a", json!("x"))].into_iter().collect();
    assert_eq!(format!("{data:?}"), r#"{"a": String("x"), "b": Number(1)}"#);
}

#[test]
fn sorting_agrees_with_string_order_for_shared_prefixes_and_repeats() {
    // Names sharing their first eight bytes (and shorter than eight), repeated in a scrambled
    // order: the result must be what sorting by the full names and keeping the last gives.
    let names = [
        "x-ga-gcs",
        "x-ga-gcd",
        "ga_session_number",
        "ga_session_id",
        "ga_sessi",
        "ga_sess",
        "",
        "a",
        "ab",
        "ab\u{0}",
        "ab\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
        "page_location",
        "page_title",
        "x-ga-gcs",
        "ga_session_id",
        "é",
        "Z",
        "client_id",
        "client_hints",
        "a",
        "page_location",
    ];
    let fields: Vec<(Key, Value)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (Key::Borrowed(*n), json!(i)))
        .collect();
    let mut expected = std::collections::BTreeMap::new();
    for (i, n) in names.iter().enumerate() {
        expected.insert((*n).to_owned(), json!(i));
    }
    let data = EventData::from_iter(fields);
    let got: Vec<(String, Value)> = data
        .iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect();
    // Look-ups tell apart the names whose zero-padded prefixes are equal.
    for (name, value) in &expected {
        assert_eq!(data.get(name), Some(value), "{name:?}");
    }
    for absent in ["ab\u{0}\u{0}", "ga_sessio", "x-ga-gc", "\u{0}"] {
        assert_eq!(data.get(absent), None, "{absent:?}");
    }
    let want: Vec<(String, Value)> = expected.into_iter().collect();
    assert_eq!(got, want);
}

#[test]
fn sorting_agrees_with_a_btree_map_on_many_generated_name_sets() {
    // A small alphabet and lengths around eight bytes: many shared prefixes and repeats.
    let mut random = crate::random::Repeatable::new(0x5EED_0001);
    for _ in 0..500 {
        let count = random.below(40);
        let mut fields = Vec::new();
        let mut expected = std::collections::BTreeMap::new();
        for i in 0..count {
            let len = 6 + random.below(5);
            let name: String = (0..len)
                .map(|_| char::from(b"ab_-"[random.below(4)]))
                .collect();
            expected.insert(name.clone(), json!(i));
            fields.push((Key::Owned(name), json!(i)));
        }
        let data = EventData::from_iter(fields);
        let got: Vec<(&str, &Value)> = data.iter().collect();
        let want: Vec<(&str, &Value)> = expected.iter().map(|(k, v)| (k.as_str(), v)).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn name_prefixes_are_the_first_eight_bytes_zero_padded() {
    assert_eq!(super::name_prefix(""), 0);
    assert_eq!(super::name_prefix("a"), 0x61 << 56);
    assert_eq!(super::name_prefix("ab"), 0x6162 << 48);
    assert_eq!(super::name_prefix("abcdefg"), 0x6162_6364_6566_6700);
    assert_eq!(super::name_prefix("abcdefgh"), 0x6162_6364_6566_6768);
    assert_eq!(super::name_prefix("abcdefghij"), 0x6162_6364_6566_6768);
}

#[test]
fn well_known_names_read_from_json_are_static_and_others_owned() {
    let data: EventData =
        serde_json::from_str(r#"{"event_name":"a","my_field":1,"client\u005fid":"c"}"#).unwrap();
    let kinds: Vec<(&str, bool)> = data
        .fields
        .iter()
        .map(|f| (f.name.as_ref(), matches!(f.name, Key::Borrowed(_))))
        .collect();
    // An escaped name arrives as an owned string: still recognised.
    assert_eq!(
        kinds,
        [
            ("client_id", true),
            ("event_name", true),
            ("my_field", false)
        ]
    );
    // Every well-known name, read from JSON, is the static copy.
    let all: Map<String, Value> = super::WELL_KNOWN_NAMES
        .iter()
        .map(|n| ((*n).to_owned(), json!(1)))
        .collect();
    let data: EventData = serde_json::from_value(Value::Object(all)).unwrap();
    assert_eq!(data.len(), super::WELL_KNOWN_NAMES.len());
    assert!(
        data.fields
            .iter()
            .all(|f| matches!(f.name, Key::Borrowed(_))),
        "{data:?}"
    );
}

static TABLE: [&str; 5] = [
    "client_id",
    "event_name",
    "ga_session_id",
    "ga_session_number",
    "x-ga-gcs",
];

/// Slots set in any order (some twice, some never) and other names inserted at the end give
/// what inserting every field in the same order gives.
#[test]
fn a_slot_builder_gives_what_inserting_in_order_gives() {
    let mut random = crate::random::Repeatable::new(0x5EED_0004);
    let others = [
        "a",
        "event_namf",
        "ga_session_idx",
        "x-ga-gcs",
        "zz",
        "client_id",
    ];
    for round in 0..500 {
        let mut slots = SlotBuilder::new(&TABLE);
        let mut expected = EventData::new();
        for i in 0..random.below(8) {
            let value = json!(format!("{round}-{i}"));
            let slot = random.below(TABLE.len());
            slots.set(slot, value.clone());
            expected.insert(TABLE[slot], value);
        }
        for (slot, name) in TABLE.iter().enumerate() {
            assert_eq!(slots.get(slot), expected.get(name), "slot {slot}");
        }
        let mut extra = Vec::new();
        for i in 0..random.below(4) {
            let name = others[random.below(others.len())];
            let value = json!(i);
            expected.insert(name, value.clone());
            extra.push((Key::Borrowed(name), value));
        }
        let data = slots.finish(extra);
        assert_eq!(data, expected, "round {round}");
        assert!(data.keys().is_sorted_by(|a, b| a < b));
    }
}

#[test]
fn a_slot_builder_ignores_slots_past_its_table_and_sorts_an_unsorted_table() {
    static UNSORTED: [&str; 3] = ["zeta", "alpha", "mid"];
    let mut slots = SlotBuilder::new(&UNSORTED);
    slots.set(0, json!(1));
    slots.set(1, json!(2));
    slots.set(3, json!("past the table"));
    assert_eq!(slots.get(2), None);
    assert_eq!(slots.get(3), None);
    let data = slots.finish([(Key::Borrowed("beta"), json!(3))]);
    let keys: Vec<&str> = data.keys().collect();
    assert_eq!(keys, ["alpha", "beta", "zeta"]);
    assert_eq!(data.get("beta"), Some(&json!(3)));
}

/// Builds `{"built": <text>}` and counts its calls (per test: each test uses its own text).
fn count_builds(text: &str) -> Value {
    BUILDS.with(|b| b.set(b.get() + 1));
    json!({ "built": text })
}

thread_local! {
    static BUILDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn builds() -> usize {
    BUILDS.with(std::cell::Cell::get)
}

fn with_deferred() -> EventData {
    let mut slots = SlotBuilder::new(&["a", "hints", "z"]);
    slots.set(0, json!(1));
    slots.set_deferred(1, Deferred::new("raw".into(), count_builds));
    slots.set(2, json!(2));
    slots.finish([])
}

#[test]
fn a_deferred_field_is_built_once_on_first_read() {
    let data = with_deferred();
    let eager = EventData::from_iter([
        ("a", json!(1)),
        ("hints", json!({"built": "raw"})),
        ("z", json!(2)),
    ]);
    // Names and other values: nothing built.
    let names: Vec<&str> = data.fields().map(FieldRef::name).collect();
    assert_eq!(names, ["a", "hints", "z"]);
    assert_eq!(data.fields().next().map(FieldRef::value), Some(&json!(1)));
    assert_eq!(data.get("z"), Some(&json!(2)));
    assert_eq!(builds(), 0);
    // The first read builds it; later reads (and copies made after it) reuse it.
    assert_eq!(data.get("hints"), Some(&json!({"built": "raw"})));
    assert_eq!(data["hints"], json!({"built": "raw"}));
    let copy = data.clone();
    assert_eq!(copy.get("hints"), Some(&json!({"built": "raw"})));
    assert_eq!(builds(), 1);
    assert_reads_as_built(&data, &eager);
    assert_eq!(data.clone().into_value(), eager.clone().into_value());
    assert_eq!(builds(), 1);
}

/// Every reader other than a look-up — comparison, serialisation, `Debug` — sees `data` as
/// `eager` (the same fields with the value built), and none of them builds it again.
fn assert_reads_as_built(data: &EventData, eager: &EventData) {
    let before = builds();
    assert_eq!(data, eager);
    assert_eq!(
        serde_json::to_string(data).unwrap(),
        serde_json::to_string(eager).unwrap()
    );
    assert_eq!(format!("{data:?}"), format!("{eager:?}"));
    assert_eq!(builds(), before);
}

/// Each way of taking or changing the `hints` field of event data `make` returns, unread —
/// `remove`, `insert`, `get_mut`, `retain` then `into_value`, `into_iter`, `values` — gets the
/// built value, one build each. `without_a` is the data's JSON without field `a`, `values` all
/// its values in order.
fn assert_takers_build(make: fn() -> EventData, without_a: &Value, values: &[Value]) {
    let expected = json!({"built": "raw"});
    let before = builds();
    assert_eq!(make().remove("hints"), Some(expected.clone()));
    assert_eq!(make().insert("hints", json!(0)), Some(expected.clone()));
    let mut data = make();
    data.get_mut("hints").unwrap()["more"] = json!(true);
    assert_eq!(data["hints"], json!({"built": "raw", "more": true}));
    let mut data = make();
    data.retain(|name, _| name != "a");
    assert_eq!(&data.into_value(), without_a);
    let owned: Vec<(Key, Value)> = make().into_iter().collect();
    assert_eq!(owned[1], (Key::Borrowed("hints"), expected));
    let iterated: Vec<Value> = make().values().cloned().collect();
    assert_eq!(iterated, values);
    assert_eq!(builds(), before + 6);
}

#[test]
fn a_deferred_field_unread_is_built_by_whatever_takes_or_changes_it() {
    let expected = json!({"built": "raw"});
    assert_takers_build(
        with_deferred,
        &json!({"hints": expected, "z": 2}),
        &[json!(1), expected.clone(), json!(2)],
    );
    // An unread copy builds on its own.
    let before = builds();
    let data = with_deferred();
    let copy = data.clone();
    assert_eq!(copy.get("hints"), Some(&expected));
    assert_eq!(data.get("hints"), Some(&expected));
    assert_eq!(builds(), before + 2);
}

/// Event data whose `hints` field is built from text in the event's buffer, beside text fields
/// set before and after it.
fn with_built_text() -> EventData {
    let mut slots = SlotBuilder::new(&["a", "hints", "t", "z"]);
    slots.set(0, json!(1));
    slots.set_text(2, "before");
    slots.set_built_text(1, |text| text.push_str("raw"), count_builds);
    slots.set(3, json!(2));
    slots.finish([])
}

#[test]
fn a_field_built_from_text_is_built_once_on_first_read_and_reads_as_its_value() {
    let data = with_built_text();
    let eager = EventData::from_iter([
        ("a", json!(1)),
        ("hints", json!({"built": "raw"})),
        ("t", json!("before")),
        ("z", json!(2)),
    ]);
    let before = builds();
    // Names, text and other values: nothing built.
    let names: Vec<&str> = data.fields().map(FieldRef::name).collect();
    assert_eq!(names, ["a", "hints", "t", "z"]);
    assert_eq!(data.get_str("t"), Some("before"));
    assert_eq!(data.get("z"), Some(&json!(2)));
    assert_eq!(builds(), before);
    // The first read builds it (never as the JSON string of its text); later reads reuse it.
    assert_eq!(data.get("hints"), Some(&json!({"built": "raw"})));
    assert_eq!(
        data.get_ref("hints"),
        Some(ValueRef::Value(&json!({"built": "raw"})))
    );
    assert_eq!(data.get_str("hints"), None);
    assert_eq!(data["hints"], json!({"built": "raw"}));
    assert_eq!(data.get("t"), Some(&json!("before")));
    assert_eq!(builds(), before + 1);
    assert_reads_as_built(&data, &eager);
    assert_eq!(builds(), before + 1);
    // A copy keeps the text and builds again on its first read (as a copy of text does).
    let copy = data.clone();
    assert_eq!(copy.get("hints"), Some(&json!({"built": "raw"})));
    assert_eq!(builds(), before + 2);
}

#[test]
fn a_field_built_from_text_unread_is_built_by_whatever_takes_or_changes_it() {
    let expected = json!({"built": "raw"});
    assert_takers_build(
        with_built_text,
        &json!({"hints": expected, "t": "before", "z": 2}),
        &[json!(1), expected.clone(), json!("before"), json!(2)],
    );
    // Taken or changed after a read: the value read is copied, not built again.
    let mut data = with_built_text();
    assert_eq!(data.get("hints"), Some(&expected));
    let built = builds();
    data.get_mut("hints").unwrap()["more"] = json!(true);
    assert_eq!(builds(), built);
    let data = with_built_text();
    assert_eq!(data.get("hints"), Some(&expected));
    let built = builds();
    assert_eq!(data.into_value()["hints"], expected);
    assert_eq!(builds(), built);
    // Text set after the value was read: the value is built again, the same.
    let mut slots = SlotBuilder::new(&["hints", "later"]);
    slots.set_built_text(0, |text| text.push_str("raw"), count_builds);
    assert_eq!(slots.get(0), Some(&expected));
    slots.set_text(1, "more text");
    assert_eq!(slots.get(0), Some(&expected));
    let data = slots.finish([]);
    assert_eq!(data.get_str("later"), Some("more text"));
    assert_eq!(data.get("hints"), Some(&expected));
}

/// A name from a small alphabet, six to ten bytes: many shared prefixes and repeats.
fn generated_name(random: &mut crate::random::Repeatable) -> String {
    let len = 6 + random.below(5);
    (0..len)
        .map(|_| char::from(b"ab_-"[random.below(4)]))
        .collect()
}

#[test]
fn set_and_rename_agree_with_a_json_map_on_many_generated_name_sets() {
    let mut random = crate::random::Repeatable::new(0x5EED_0002);
    for round in 0..500 {
        let mut map = Map::new();
        for i in 0..random.below(20) {
            map.insert(generated_name(&mut random), json!(i));
        }
        let mut data = EventData::from(map.clone());
        for step in 0..6 {
            let (a, b) = (generated_name(&mut random), generated_name(&mut random));
            // Half the time a name that is there, so renames move fields both ways.
            let from = match map.keys().nth(random.below(map.len().max(1))) {
                Some(existing) if random.below(2) == 0 => existing.clone(),
                _ => a,
            };
            if step % 2 == 0 {
                map.insert(from.clone(), json!(["set", round, step]));
                data.set(&from, json!(["set", round, step]));
            } else {
                let moved = map.remove(&from);
                let had = moved.is_some();
                if let Some(value) = moved {
                    map.insert(b.clone(), value);
                }
                assert_eq!(data.rename(&from, &b), had, "{from} → {b}");
            }
            let got: Vec<(&str, &Value)> = data.iter().collect();
            let want: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            assert_eq!(got, want, "round {round}, step {step}");
            // Found by look-up too: every field's prefix is its name's.
            for (name, value) in &map {
                assert_eq!(data.get(name), Some(value), "{name}");
            }
        }
    }
    // Renaming onto itself, or onto a field that is there (before or after it).
    let mut data = EventData::from_iter([("a", json!(1)), ("m", json!(2)), ("z", json!(3))]);
    assert!(data.rename("m", "m"));
    assert!(data.rename("z", "a"));
    assert_eq!(data.to_value(), json!({"a": 3, "m": 2}));
    assert!(data.rename("a", "m"));
    assert_eq!(data.to_value(), json!({"m": 3}));
    assert!(!data.rename("a", "b"));
}

#[test]
fn set_and_rename_give_well_known_names_the_static_copy_and_leave_deferred_values_unbuilt() {
    let before = builds();
    let mut data = with_deferred();
    data.set("event_id", json!("e"));
    data.set("my_field", json!(1));
    let kinds: Vec<(&str, bool)> = data
        .fields
        .iter()
        .map(|f| (f.name.as_ref(), matches!(f.name, Key::Borrowed(_))))
        .collect();
    assert!(kinds.contains(&("event_id", true)), "{kinds:?}");
    assert!(kinds.contains(&("my_field", false)), "{kinds:?}");
    // A deferred value moves as it is, and one overwritten is never built.
    assert!(data.rename("hints", "client_hints"));
    assert_eq!(builds(), before);
    let renamed = data.fields.iter().find(|f| f.name == "client_hints");
    assert!(renamed.is_some_and(|f| matches!(f.name, Key::Borrowed(_))));
    assert_eq!(data["client_hints"], json!({"built": "raw"}));
    assert_eq!(builds(), before + 1);
    let mut data = with_deferred();
    data.set("hints", json!(0));
    assert_eq!(data["hints"], json!(0));
    assert_eq!(builds(), before + 1);
}

#[test]
fn event_data_read_from_json_or_copied_has_room_for_two_more_fields() {
    let room = |d: &EventData| d.fields.capacity() - d.fields.len();
    // Around the sizes a growing vector fills exactly, from text (no size known in advance)
    // and from a value (its size known).
    for count in [0, 1, 3, 15, 16, 17, 18, 19, 31, 32, 33, 34, 64, 300] {
        let object: Map<String, Value> = (0..count).map(|i| (format!("f{i}"), json!(i))).collect();
        let text = serde_json::to_string(&object).unwrap();
        let from_text: EventData = serde_json::from_str(&text).unwrap();
        let from_value: EventData = serde_json::from_value(Value::Object(object)).unwrap();
        assert_eq!(room(&from_text), 2, "{count} fields from text");
        assert_eq!(room(&from_value), 2, "{count} fields from a value");
    }
    let data: EventData = serde_json::from_str(r#"{"a":1,"b":2,"c":3}"#).unwrap();
    let mut copy = data.clone();
    assert_eq!(room(&copy), 2);
    let first = copy.fields.as_ptr();
    copy.set("d", json!(4));
    copy.set("e", json!(5));
    assert_eq!(copy.fields.as_ptr(), first, "two more fields moved nothing");
    assert_eq!(
        std::mem::size_of::<super::Field>(),
        64,
        "the room's cost in the docs"
    );
}

/// Event data with text values: `event_name` and `page_location` kept as text (the first
/// overwritten once, as a repeated GA4 parameter is), `value` a number.
fn with_text() -> EventData {
    let mut slots = SlotBuilder::new(&["event_name", "page_location", "value"]);
    slots.reserve_text(64);
    slots.set_text(0, "page_view");
    slots.set_text(1, "https://e.com/é");
    slots.set(2, json!(59.9));
    slots.set_text(0, "purchase");
    slots.finish([(Key::Borrowed("x-other"), json!("owned"))])
}

fn without_text() -> EventData {
    EventData::from_iter([
        ("event_name", json!("purchase")),
        ("page_location", json!("https://e.com/é")),
        ("value", json!(59.9)),
        ("x-other", json!("owned")),
    ])
}

#[test]
fn text_values_read_as_text_build_nothing_and_every_reader_sees_strings() {
    let data = with_text();
    // Read as text: the slices, and no value built.
    assert_eq!(data.get_str("event_name"), Some("purchase"));
    assert_eq!(data.get_str("page_location"), Some("https://e.com/é"));
    assert_eq!(data.get_str("value"), None);
    // A field inserted as a value stays one (and compares equal to the same text).
    assert!(matches!(
        data.get_ref("x-other"),
        Some(super::ValueRef::Value(_))
    ));
    assert_eq!(data.get_ref("x-other"), Some(super::ValueRef::Str("owned")));
    let views: Vec<super::ValueRef<'_>> = data.fields().map(FieldRef::view).collect();
    assert!(matches!(views[0], super::ValueRef::Str("purchase")));
    assert!(!data.text.built_any(), "nothing built by reading text");
    // Every other reader: the same as the event data of ordinary strings.
    let expected = without_text();
    assert_eq!(data, expected);
    assert_eq!(
        serde_json::to_string(&data).unwrap(),
        serde_json::to_string(&expected).unwrap()
    );
    assert!(!data.text.built_any(), "nor by serialising it");
    assert_eq!(format!("{data:?}"), format!("{expected:?}"));
    assert_eq!(data.get("event_name"), Some(&json!("purchase")));
    assert_eq!(data["page_location"], json!("https://e.com/é"));
    let pairs: Vec<(&str, &Value)> = data.iter().collect();
    let expected_pairs: Vec<(&str, &Value)> = expected.iter().collect();
    assert_eq!(pairs, expected_pairs);
    assert_eq!(data.clone(), expected);
    assert_eq!(data.clone().into_value(), expected.clone().into_value());
    let owned: Vec<(Key, Value)> = data.clone().into_iter().collect();
    assert_eq!(owned, expected.clone().into_iter().collect::<Vec<_>>());
}

#[test]
fn text_values_taken_or_changed_become_ordinary_strings() {
    let mut data = with_text();
    assert_eq!(data.remove("event_name"), Some(json!("purchase")));
    assert_eq!(
        data.insert("page_location", json!(1)),
        Some(json!("https://e.com/é"))
    );
    let mut data = with_text();
    match data.get_mut("event_name") {
        Some(Value::String(name)) => name.push_str("_done"),
        other => panic!("a string, not {other:?}"),
    }
    assert_eq!(data.get_str("event_name"), Some("purchase_done"));
    let mut data = with_text();
    data.retain(|name, value| {
        if name == "page_location" {
            *value = json!("changed");
        }
        true
    });
    assert_eq!(data["page_location"], json!("changed"));
    // Renamed, a text value moves as it is.
    let mut data = with_text();
    assert!(data.rename("page_location", "page_url"));
    assert_eq!(data.get_str("page_url"), Some("https://e.com/é"));
}

#[test]
fn set_str_rewrites_text_in_place_when_it_fits_and_otherwise_stores_a_string() {
    let mut data = with_text();
    // Read as a value first: the value built from the old text goes.
    assert_eq!(data["event_name"], json!("purchase"));
    data.set_str("event_name", "PURCHASE");
    assert!(matches!(
        data.get_ref("event_name"),
        Some(super::ValueRef::Str("PURCHASE"))
    ));
    assert_eq!(data["event_name"], json!("PURCHASE"));
    // The neighbouring text is untouched.
    assert_eq!(data.get_str("page_location"), Some("https://e.com/é"));
    // Another length, an ordinary string, a number, a new field.
    data.set_str("event_name", "Purchase Completed");
    assert_eq!(data.get_str("event_name"), Some("Purchase Completed"));
    data.set_str("event_name", "again");
    data.set_str("value", "sixty");
    data.set_str("new", "field");
    assert_eq!(
        data.to_value(),
        json!({"event_name": "again", "new": "field", "page_location": "https://e.com/é",
               "value": "sixty", "x-other": "owned"})
    );
    assert_eq!(
        std::mem::size_of::<super::FieldValue>(),
        std::mem::size_of::<Value>()
    );
}

#[test]
fn text_set_after_a_value_was_read_is_read_whole_and_an_unsorted_table_keeps_its_text() {
    let mut slots = SlotBuilder::new(&["a", "b", "c"]);
    slots.set_text(0, "first");
    // Reading a value builds the cells for the spans so far; a later span still gets one.
    assert_eq!(slots.get(0), Some(&json!("first")));
    slots.set_text(1, "second");
    slots.set_text(0, "third");
    assert_eq!(slots.get(1), Some(&json!("second")));
    let data = slots.finish([]);
    assert_eq!(data.get("a"), Some(&json!("third")));
    assert_eq!(data.get("b"), Some(&json!("second")));
    assert_eq!(data.get_str("a"), Some("third"));

    let mut slots = SlotBuilder::new(&["zeta", "alpha", "mid"]);
    slots.set_text(0, "z");
    slots.set_text(1, "a");
    slots.set_text(2, "m");
    let data = slots.finish([(Key::Borrowed("beta"), json!("b"))]);
    let fields: Vec<(&str, Option<&str>)> = data
        .fields()
        .map(|f| (f.name(), f.view().as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("alpha", Some("a")),
            ("beta", Some("b")),
            ("mid", Some("m")),
            ("zeta", Some("z"))
        ]
    );
    assert_eq!(
        format!("{:#?}", data.get_ref("alpha").unwrap()),
        r#"String("a")"#
    );
}

/// `path::get_ref` reads a text field as text (building nothing, as `path::get` would) and
/// otherwise finds what `path::get` finds.
#[test]
fn paths_read_text_without_building_it() {
    use crate::path;
    let data = with_text();
    assert_eq!(
        path::get_ref(&data, "page_location"),
        Some(super::ValueRef::Str("https://e.com/é"))
    );
    // Text has no fields.
    assert_eq!(path::get_ref(&data, "event_name.x"), None);
    assert!(!data.text.built_any(), "nothing built by a path read");
    let nested = EventData::from_iter([("user_data", json!({"a": [1, {"b": "c"}]}))]);
    for (data, p) in [
        (&data, "event_name"),
        (&data, "value"),
        (&data, "missing"),
        (&nested, "user_data.a.1.b"),
        (&nested, "user_data.a.0"),
        (&nested, "user_data.a.2"),
        (&nested, "user_data.a.x"),
    ] {
        assert_eq!(
            path::get_ref(data, p),
            path::get(data, p).map(super::ValueRef::Value),
            "{p}"
        );
    }
}

#[test]
fn slot_tables_know_whether_their_names_are_strictly_in_order() {
    assert!(SlotTable::new(["a", "b", "c"]).sorted);
    assert!(SlotTable::new(["ab", "abc", "b"]).sorted);
    // Names alike in their first eight bytes (a prefix compare alone would not order them).
    assert!(SlotTable::new(["x-ga-mp2-seg", "x-ga-mp2-user_properties", "x-ga-npa"]).sorted);
    assert!(SlotTable::<0>::new([]).sorted);
    assert!(!SlotTable::new(["b", "a"]).sorted);
    assert!(!SlotTable::new(["abc", "ab"]).sorted);
    // A repeated name is not in strict order: its slots are merged when finishing.
    assert!(!SlotTable::new(["a", "a", "b"]).sorted);
}

#[test]
fn a_table_with_a_repeated_name_keeps_one_field_with_the_later_slots_value() {
    static TABLE: SlotTable<3> = SlotTable::new(["a", "m", "m"]);
    let mut slots = SlotBuilder::from_table(&TABLE);
    slots.set(2, json!("later slot"));
    slots.set(1, json!("earlier slot"));
    slots.set(0, json!(0));
    let data = slots.finish([]);
    assert_eq!(data.keys().collect::<Vec<_>>(), ["a", "m"]);
    assert_eq!(data.get("m"), Some(&json!("later slot")));
}
