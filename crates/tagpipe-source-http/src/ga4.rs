//! GA4 gtag.js hits (`/g/collect`) turned into sGTM event data, as the sGTM GA4 client does.
//!
//! The query string carries the parameters shared by every hit; a POST body carries one hit per
//! non-empty line, each a URL-encoded parameter set whose values override the query's. Mapping:
//!
//! | parameter | event data |
//! |---|---|
//! | `en` | `event_name` (required) |
//! | `v`, `tid`, `gtm`, `_p` | `x-ga-protocol_version`, `x-ga-measurement_id`, `x-ga-gtm_version`, `x-ga-page_id` |
//! | `cid`, `uid`, `sid`, `sct` | `client_id`, `user_id`, `ga_session_id`, `ga_session_number` (number) |
//! | `dl`, `dt`, `dr`, `ul`, `sr`, `cu` | `page_location`, `page_title`, `page_referrer`, `language`, `screen_resolution`, `currency` |
//! | `seg`, `_et` | `x-ga-mp2-seg`, `engagement_time_msec` (number) |
//! | `gcs`, `gcd`, `npa`, `dma`, `tfd` | `x-ga-gcs`, `x-ga-gcd`, `x-ga-npa`, `x-ga-dma`, `x-ga-tfd` |
//! | `ep.NAME` / `epn.NAME` | `NAME` as a string / as a number |
//! | `up.NAME` / `upn.NAME` | `x-ga-mp2-user_properties.NAME` as a string / as a number |
//! | `uaa uab uafvl uamb uam uap uapv uaw` | `client_hints.{architecture, bitness, full_version_list, mobile, model, platform, platform_version, wow64}` |
//! | `pr1`, `pr2`, … | `items[]` (`id` item_id, `nm` item_name, `pr` price, `qt` quantity, …, `k0`/`v0` custom) |
//! | `em` (`tv.1~em.HASH~ph.HASH~…`) | `user_data.sha256_email_address`, `sha256_phone_number`, `address.*` |
//! | `_uip` | `ip_override` (else the client's address) |
//! | other `_x` | `x-ga-system_properties.x` |
//! | anything else | `x-ga-NAME` |
//!
//! `user_agent` comes from the `User-Agent` header. A number parameter whose value is not a
//! number keeps its text rather than being dropped.

use std::net::IpAddr;

use serde_json::{Map, Number, Value};
use tagpipe_core::EventData;

use crate::urlencoded;

/// Parses a `/g/collect` request (query string, body) into one event per hit.
pub fn parse_hits(
    query: &[u8],
    body: &[u8],
    client_addr: IpAddr,
    user_agent: Option<&str>,
    max_events: usize,
) -> Result<Vec<EventData>, String> {
    let shared = urlencoded::parse(query).map_err(|e| format!("query string: {e}"))?;
    let lines: Vec<&[u8]> = body
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > max_events {
        return Err(format!(
            "{} hits in one request; at most {max_events} are accepted",
            lines.len()
        ));
    }
    let mut events = Vec::with_capacity(lines.len().max(1));
    if lines.is_empty() {
        events.push(hit(&shared, &[], client_addr, user_agent).map_err(|e| format!("hit 0: {e}"))?);
    }
    for (i, line) in lines.iter().enumerate() {
        let own = urlencoded::parse(line).map_err(|e| format!("hit {i} (body line {}): {e}", i + 1))?;
        events.push(hit(&shared, &own, client_addr, user_agent).map_err(|e| format!("hit {i}: {e}"))?);
    }
    Ok(events)
}

/// One hit: the shared parameters, overridden by the hit's own.
fn hit(
    shared: &[(String, String)],
    own: &[(String, String)],
    client_addr: IpAddr,
    user_agent: Option<&str>,
) -> Result<EventData, String> {
    let mut data = EventData::new();
    let overridden = |name: &str| own.iter().any(|(n, _)| n == name);
    let params = shared
        .iter()
        .filter(|(n, _)| !overridden(n))
        .chain(own.iter());
    let mut items: Vec<(usize, Value)> = Vec::new();
    for (name, value) in params {
        apply(&mut data, &mut items, name, value);
    }
    match data.get("event_name") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err("missing the event name (`en`)".into()),
    }
    if let Some(Value::String(v)) = data.get("x-ga-protocol_version")
        && v != "2"
    {
        return Err(format!("unsupported protocol version `v={v}` (expected 2)"));
    }
    if !items.is_empty() {
        items.sort_by_key(|(i, _)| *i);
        data.insert(
            "items".into(),
            Value::Array(items.into_iter().map(|(_, v)| v).collect()),
        );
    }
    data.entry("ip_override")
        .or_insert_with(|| Value::String(client_addr.to_string()));
    if let Some(ua) = user_agent {
        data.insert("user_agent".into(), Value::String(ua.to_owned()));
    }
    Ok(data)
}

fn apply(data: &mut EventData, items: &mut Vec<(usize, Value)>, name: &str, value: &str) {
    let text = || Value::String(value.to_owned());
    let key = match name {
        "en" => "event_name",
        "v" => "x-ga-protocol_version",
        "tid" => "x-ga-measurement_id",
        "gtm" => "x-ga-gtm_version",
        "_p" => "x-ga-page_id",
        "cid" => "client_id",
        "uid" => "user_id",
        "sid" => "ga_session_id",
        "seg" => "x-ga-mp2-seg",
        "dl" => "page_location",
        "dt" => "page_title",
        "dr" => "page_referrer",
        "ul" => "language",
        "sr" => "screen_resolution",
        "cu" => "currency",
        "gcs" => "x-ga-gcs",
        "gcd" => "x-ga-gcd",
        "npa" => "x-ga-npa",
        "dma" => "x-ga-dma",
        "tfd" => "x-ga-tfd",
        "_uip" => "ip_override",
        "sct" => {
            data.insert("ga_session_number".into(), number(value));
            return;
        }
        "_et" => {
            data.insert("engagement_time_msec".into(), number(value));
            return;
        }
        "em" => {
            user_provided_data(data, value);
            return;
        }
        _ => {
            other(data, items, name, value);
            return;
        }
    };
    data.insert(key.to_owned(), text());
}

fn other(data: &mut EventData, items: &mut Vec<(usize, Value)>, name: &str, value: &str) {
    if let Some(field) = name.strip_prefix("ep.") {
        data.insert(field.to_owned(), Value::String(value.to_owned()));
    } else if let Some(field) = name.strip_prefix("epn.") {
        data.insert(field.to_owned(), number(value));
    } else if let Some(field) = name.strip_prefix("up.") {
        object(data, "x-ga-mp2-user_properties").insert(field.to_owned(), Value::String(value.to_owned()));
    } else if let Some(field) = name.strip_prefix("upn.") {
        object(data, "x-ga-mp2-user_properties").insert(field.to_owned(), number(value));
    } else if let Some(hint) = client_hint(name) {
        let v = match name {
            "uamb" | "uaw" => Value::Bool(value == "1" || value == "?1"),
            "uafvl" => full_version_list(value),
            _ => Value::String(value.to_owned()),
        };
        object(data, "client_hints").insert(hint.to_owned(), v);
    } else if let Some(index) = name
        .strip_prefix("pr")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n >= 1)
    {
        items.retain(|(i, _)| *i != index);
        items.push((index, item(value)));
    } else if let Some(field) = name.strip_prefix('_') {
        object(data, "x-ga-system_properties").insert(field.to_owned(), Value::String(value.to_owned()));
    } else {
        data.insert(format!("x-ga-{name}"), Value::String(value.to_owned()));
    }
}

fn client_hint(name: &str) -> Option<&'static str> {
    Some(match name {
        "uaa" => "architecture",
        "uab" => "bitness",
        "uafvl" => "full_version_list",
        "uamb" => "mobile",
        "uam" => "model",
        "uap" => "platform",
        "uapv" => "platform_version",
        "uaw" => "wow64",
        _ => return None,
    })
}

/// `Chromium;128.0.6613.120|Google%20Chrome;128.0.6613.120` → `[{brand, version}, …]`
/// (gtag percent-encodes the brands inside the already encoded parameter).
fn full_version_list(value: &str) -> Value {
    Value::Array(
        value
            .split('|')
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (brand, version) = entry.rsplit_once(';').unwrap_or((entry, ""));
                let mut m = Map::new();
                let brand = urlencoded::decode(brand.as_bytes()).unwrap_or_else(|_| brand.to_owned());
                m.insert("brand".into(), Value::String(brand));
                m.insert("version".into(), Value::String(version.to_owned()));
                Value::Object(m)
            })
            .collect(),
    )
}

fn object<'a>(data: &'a mut EventData, key: &str) -> &'a mut Map<String, Value> {
    let slot = data
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("just made an object")
}

/// A number when the text is one (integers stay integers), else the text.
fn number(value: &str) -> Value {
    if let Ok(i) = value.parse::<i64>() {
        return Value::Number(i.into());
    }
    value
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or_else(|| Value::String(value.to_owned()), Value::Number)
}

/// One item: `~`-separated segments of a two-letter code and a value.
fn item(value: &str) -> Value {
    let mut m = Map::new();
    let mut custom_keys: Vec<(char, String)> = Vec::new();
    let mut custom_values: Vec<(char, String)> = Vec::new();
    for segment in value.split('~') {
        let Some(code) = segment.get(..2) else { continue };
        let v = &segment[2..];
        let key = match code {
            "id" => "item_id",
            "nm" => "item_name",
            "br" => "item_brand",
            "ca" => "item_category",
            "c2" => "item_category2",
            "c3" => "item_category3",
            "c4" => "item_category4",
            "c5" => "item_category5",
            "va" => "item_variant",
            "cp" => "coupon",
            "ln" => "item_list_name",
            "li" => "item_list_id",
            "af" => "affiliation",
            "lo" => "location_id",
            "pr" | "qt" | "ds" | "lp" => {
                let key = match code {
                    "pr" => "price",
                    "qt" => "quantity",
                    "ds" => "discount",
                    _ => "index",
                };
                m.insert(key.into(), number(v));
                continue;
            }
            _ => {
                let mut chars = code.chars();
                match (chars.next(), chars.next()) {
                    (Some('k'), Some(n)) if n.is_ascii_digit() => custom_keys.push((n, v.to_owned())),
                    (Some('v'), Some(n)) if n.is_ascii_digit() => custom_values.push((n, v.to_owned())),
                    _ => {}
                }
                continue;
            }
        };
        m.insert(key.into(), Value::String(v.to_owned()));
    }
    for (n, key) in custom_keys {
        if let Some((_, value)) = custom_values.iter().find(|(m, _)| *m == n) {
            m.insert(key, Value::String(value.clone()));
        }
    }
    Value::Object(m)
}

/// `em=tv.1~em.HASH~ph.HASH~fn.HASH…`: user-provided data, hashed in the browser.
fn user_provided_data(data: &mut EventData, value: &str) {
    let user_data = object(data, "user_data");
    for segment in value.split('~') {
        let Some((code, v)) = segment.split_once('.') else { continue };
        let v = Value::String(v.to_owned());
        match code {
            "em" => {
                user_data.insert("sha256_email_address".into(), v);
            }
            "ph" => {
                user_data.insert("sha256_phone_number".into(), v);
            }
            "fn" | "ln" | "sa" | "ct" | "rg" | "pc" | "co" => {
                let key = match code {
                    "fn" => "sha256_first_name",
                    "ln" => "sha256_last_name",
                    "sa" => "sha256_street",
                    "ct" => "city",
                    "rg" => "region",
                    "pc" => "postal_code",
                    _ => "country",
                };
                let address = user_data
                    .entry("address")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(address) = address {
                    address.insert(key.into(), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
