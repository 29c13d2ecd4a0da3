use serde_json::json;

use super::*;

/// A body's events, read as they would go into the pipelines; checks that every event counted
/// at parsing is read.
fn read_all(body: &[u8], framing: Framing) -> Result<Vec<Value>, HttpError> {
    let batch = parse(body, framing, 10)?;
    let len = batch.len();
    let events: Vec<Value> = batch.events().map(EventData::into_value).collect();
    assert_eq!(events.len(), len, "every checked event decodes");
    Ok(events)
}

/// Asserts that `parse` refuses `body` with a reason starting with `start`; the refusal.
fn refused_with(body: &[u8], framing: Framing, max: usize, start: &str) -> HttpError {
    let e = parse(body, framing, max).unwrap_err();
    let shown = String::from_utf8_lossy(body);
    assert!(e.message.starts_with(start), "{shown:?}: {}", e.message);
    e
}

#[test]
fn objects_arrays_and_ndjson() {
    assert_eq!(parse(br#"{"a":1}"#, Framing::Json, 10).unwrap().len(), 1);
    assert_eq!(
        parse(br#"[{"a":1},{"b":2}]"#, Framing::Json, 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        parse(b"{\"a\":1}\n\n{\"b\":2}\n", Framing::Ndjson, 10)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn array_and_ndjson_events_are_read_in_order_as_they_go() {
    let body =
        br#" [ {"event_name":"a","n":1.5,"nested":{"x":[1,"\u00e9"]}}, {"event_name":"b"} ] "#;
    let batch = parse(body, Framing::Json, 10).unwrap();
    assert!(
        matches!(batch, Batch::Checked(_)),
        "an array is checked, its events read later"
    );
    assert_eq!(
        read_all(body, Framing::Json).unwrap(),
        vec![
            json!({"event_name": "a", "n": 1.5, "nested": {"x": [1, "é"]}}),
            json!({"event_name": "b"}),
        ]
    );
    let ndjson = b"{\"event_name\":\"a\"}\r\n\n{\"event_name\":\"b\"}";
    assert_eq!(
        read_all(ndjson, Framing::Ndjson).unwrap(),
        vec![json!({"event_name": "a"}), json!({"event_name": "b"})]
    );
    assert_eq!(
        read_all(br#"{"event_name":"only"}"#, Framing::Json).unwrap(),
        vec![json!({"event_name": "only"})]
    );
}

#[test]
fn the_checking_pass_refuses_what_only_decoding_finds() {
    // A scan of the syntax alone passes each of these items; decoding does not.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    let items = [
        r#"{"value":1e400}"#.to_owned(),
        r#"{"value":-1e400}"#.to_owned(),
        format!(r#"{{"value":{}}}"#, "9".repeat(400)),
        r#"{"a":"\ud800"}"#.to_owned(),
        r#"{"\ud800":1}"#.to_owned(),
        "{\"a\":\"\u{1}\"}".to_owned(),
        deep,
        // One level more than the decoder takes: the object and 127 arrays.
        format!("{{\"a\":{}1{}}}", "[".repeat(127), "]".repeat(127)),
    ];
    for item in &items {
        let array = format!(r#"[{{"ok":1}},{item}]"#);
        let e = refused_with(
            array.as_bytes(),
            Framing::Json,
            10,
            "malformed JSON at line 1",
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{array}");
        let lines = format!("{{\"ok\":1}}\n{item}\n");
        let start = "event 1 (line 2): malformed JSON";
        refused_with(lines.as_bytes(), Framing::Ndjson, 10, start);
        assert!(
            serde_json::from_str::<EventData>(item).is_err(),
            "decoding refuses it too"
        );
    }
}

#[test]
fn refusals_say_what_and_where() {
    let e = parse(br#"[{"a":1},"x",{"b":2}]"#, Framing::Json, 10).unwrap_err();
    assert_eq!(e.message, "event 1 is not a JSON object (found a string)");
    let e = parse(br#"[{"a":1},[1,{}]]"#, Framing::Json, 10).unwrap_err();
    assert_eq!(e.message, "event 1 is not a JSON object (found an array)");
    let start = "event 1 (line 2): malformed JSON";
    refused_with(b"{\"a\":1}\n{\"b\":", Framing::Ndjson, 10, start);
    let e = parse(b"{\"a\":1}\nnull", Framing::Ndjson, 10).unwrap_err();
    assert_eq!(
        e.message,
        "event 1 (line 2) is not a JSON object (found null)"
    );
    refused_with(
        b"{\"a\": tru}",
        Framing::Json,
        10,
        "malformed JSON at line 1 column",
    );
    let body = b"[{\"a\":1},\n {\"a\": tru}]";
    refused_with(body, Framing::Json, 10, "malformed JSON at line 2 column");
    let e = parse(b"{\"a\": \"\xff\"}", Framing::Json, 10).unwrap_err();
    assert_eq!(e.message, "the body is not valid UTF-8 (at byte 7)");
    let e = parse(b"[{},{},{}]", Framing::Json, 2).unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    let e = parse(b"[{},{},\"x\"]", Framing::Json, 2).unwrap_err();
    assert_eq!(
        e.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too many is said before a bad item"
    );
    let e = parse(b"42", Framing::Json, 2).unwrap_err();
    assert!(e.message.contains("found a number"));
    refused_with(b"  ", Framing::Json, 2, "empty body");
    assert_eq!(
        Framing::from_media_type(Some("text/csv"))
            .unwrap_err()
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[test]
fn the_element_wise_pass_reads_arrays_as_the_whole_body_pass_does() {
    for (body, texts) in [
        ("[]", vec![]),
        (" \r\n[ ]\t", vec![]),
        ("[{}]", vec!["{}"]),
        (
            "[\n {\"a\": [1, {\"b\": \"]\"}]} ,\n\t{\"c\": \"},{\"}\n]\n",
            vec!["{\"a\": [1, {\"b\": \"]\"}]}", "{\"c\": \"},{\"}"],
        ),
        ("[{}, 2]", vec!["{}", "2"]),
    ] {
        let array = array_items(body, 10).expect(body);
        assert_eq!(array.items, texts, "{body:?}");
        assert_eq!(array.len, texts.len());
    }
    let array = array_items("[{}, 2, [], {}]", 2).unwrap();
    assert_eq!(
        (array.len, array.items, array.first_other),
        (4, vec!["{}", "2"], Some((1, "a number"))),
        "all counted, the first non-object named, no more texts kept than can be accepted"
    );
    for body in [
        "{}",
        "\"x\"",
        "[{},]",
        "[{} {}]",
        "[{}] x",
        "[{},{}",
        "[",
        "[,{}]",
        "[{}]\u{a0}",
        "\u{a0}[{}]",
        "[{\"a\":01}]",
        "[1 2]",
    ] {
        assert!(array_items(body, 10).is_none(), "{body:?}");
        if body.contains('[') {
            let start = "malformed JSON at line 1 column";
            refused_with(body.as_bytes(), Framing::Json, 10, start);
        }
    }
    let e = parse(b"[{}, 2, {}]", Framing::Json, 10).unwrap_err();
    assert_eq!(e.message, "event 1 is not a JSON object (found a number)");
    let e = parse(b"[1, 2, 3]", Framing::Json, 2).unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    let e = parse(b"[{}, {}, {}, x]", Framing::Json, 2).unwrap_err();
    assert_eq!(
        e.status,
        StatusCode::BAD_REQUEST,
        "broken syntax is said before too many"
    );
}

#[test]
fn an_element_nests_as_deep_as_decoding_takes() {
    // The object and 126 arrays: 127 levels, the most the decoder takes.
    let item = format!("{{\"a\":{}1{}}}", "[".repeat(126), "]".repeat(126));
    assert!(serde_json::from_str::<EventData>(&item).is_ok());
    assert_eq!(
        read_all(format!("[{item}]").as_bytes(), Framing::Json)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        read_all(format!("{item}\n").as_bytes(), Framing::Ndjson)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn serde_json_private_names_are_ordinary_keys() {
    // With serde_json's `raw_value` feature on (in any crate of the build), a map whose first
    // key is this name decodes as the JSON text of its value: the checking pass would accept
    // events that decoding then refuses, and `{"x": 1}` would silently change meaning.
    let body = br#"[{"a":{"$serde_json::private::RawValue":"[1"}},{"b":{"$serde_json::private::RawValue":1}}]"#;
    assert_eq!(
        read_all(body, Framing::Json).unwrap(),
        vec![
            json!({"a": {"$serde_json::private::RawValue": "[1"}}),
            json!({"b": {"$serde_json::private::RawValue": 1}}),
        ]
    );
}
