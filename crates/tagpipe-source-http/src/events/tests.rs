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
        r#"{"a":"\ud800"}"#.to_owned(),
        deep,
    ];
    for item in &items {
        let array = format!(r#"[{{"ok":1}},{item}]"#);
        let e = parse(array.as_bytes(), Framing::Json, 10).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{array}");
        assert!(
            e.message.starts_with("malformed JSON at line 1"),
            "{}",
            e.message
        );
        let lines = format!("{{\"ok\":1}}\n{item}\n");
        let e = parse(lines.as_bytes(), Framing::Ndjson, 10).unwrap_err();
        assert!(
            e.message.starts_with("event 1 (line 2): malformed JSON"),
            "{}",
            e.message
        );
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
    let e = parse(b"{\"a\":1}\n{\"b\":", Framing::Ndjson, 10).unwrap_err();
    assert!(
        e.message.starts_with("event 1 (line 2): malformed JSON"),
        "{}",
        e.message
    );
    let e = parse(b"{\"a\":1}\nnull", Framing::Ndjson, 10).unwrap_err();
    assert_eq!(
        e.message,
        "event 1 (line 2) is not a JSON object (found null)"
    );
    let e = parse(b"{\"a\": tru}", Framing::Json, 10).unwrap_err();
    assert!(
        e.message.starts_with("malformed JSON at line 1 column"),
        "{}",
        e.message
    );
    let e = parse(b"[{\"a\":1},\n {\"a\": tru}]", Framing::Json, 10).unwrap_err();
    assert!(
        e.message.starts_with("malformed JSON at line 2 column"),
        "{}",
        e.message
    );
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
    let e = parse(b"  ", Framing::Json, 2).unwrap_err();
    assert!(e.message.starts_with("empty body"), "{}", e.message);
    assert_eq!(
        Framing::from_media_type(Some("text/csv"))
            .unwrap_err()
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[test]
fn the_element_wise_pass_reads_arrays_as_the_whole_body_pass_does() {
    for (body, events) in [
        ("[]", 0),
        (" \r\n[ ]\t", 0),
        ("[{}]", 1),
        (
            "[\n {\"a\": [1, {\"b\": \"]\"}]} ,\n\t{\"c\": \"},{\"}\n]\n",
            2,
        ),
    ] {
        let batch = parse(body.as_bytes(), Framing::Json, 10).unwrap();
        assert!(matches!(batch, Batch::Checked(_)), "{body:?}");
        assert_eq!(
            read_all(body.as_bytes(), Framing::Json).unwrap().len(),
            events
        );
    }
    for body in [
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
        let e = parse(body.as_bytes(), Framing::Json, 10).unwrap_err();
        assert!(
            e.message.starts_with("malformed JSON at line 1 column"),
            "{body:?}: {}",
            e.message
        );
        assert!(serde_json::from_str::<Value>(body).is_err(), "{body:?}");
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
