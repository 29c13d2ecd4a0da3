//! The `spotify_device_id` processor: the tag's device-id cookie, at request time.
//!
//! Reads `__spdt`, else `__pdst`, from the request's cookies, else makes a new random 32-hex id;
//! (re)sets the cookie it came from (`__spdt` for a new id) on the HTTP answer — `Domain`
//! (`auto`: the registrable domain of the `Forwarded` host, else `X-Forwarded-Host`, else `Host`,
//! from the public-suffix list), `Path=/`, `SameSite=Lax`, `Secure`, `Max-Age`, optional
//! `HttpOnly` — and writes the id to the event (`x-spotify-device_id`), where the `spotify` sink
//! reads it. It runs in the pipeline (not in the sink) so the cookie is on the answer even when
//! the sink is optimistic.

use serde::Deserialize;
use serde_json::Value;
use tagpipe_core::event::SameSite;
use tagpipe_core::{
    BoxError, Event, EventLayer, EventProcessor, ProcessorComponent, ProcessorConfig,
    ProcessorContext, ProcessorLayer, RequestContext, SetCookie, ValidationError, random,
};

/// `spotify_device_id` processor settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotifyDeviceIdConfig {
    /// Cookie `Domain`: `auto` (the registrable domain of the request's host, default), a
    /// domain, or `none` (a host-only cookie).
    #[serde(default = "default_domain")]
    pub cookie_domain: String,
    /// Cookie lifetime in days. Default: 365.
    #[serde(default = "default_days")]
    pub max_age_days: u64,
    /// Set `HttpOnly`. Default: `false`.
    #[serde(default)]
    pub http_only: bool,
    /// The event field to write the id to. Default: `x-spotify-device_id`.
    #[serde(default = "default_field")]
    pub field: String,
}

fn default_domain() -> String {
    "auto".to_owned()
}
fn default_days() -> u64 {
    365
}
fn default_field() -> String {
    "x-spotify-device_id".to_owned()
}

impl ProcessorConfig for SpotifyDeviceIdConfig {
    fn validate(&self) -> Vec<ValidationError> {
        let mut p = Vec::new();
        if self.field.is_empty() {
            p.push(ValidationError::new("field", "must not be empty"));
        }
        if self.cookie_domain.is_empty() || self.cookie_domain.contains([' ', ';', ',']) {
            p.push(ValidationError::new(
                "cookie_domain",
                "must be `auto`, `none` or a domain",
            ));
        }
        p
    }

    fn build(&self, _cx: ProcessorContext) -> Result<ProcessorLayer, BoxError> {
        Ok(ProcessorLayer::new(DeviceIdLayer::new(DeviceId {
            config: self.clone(),
        })))
    }
}

impl ProcessorComponent for SpotifyDeviceIdConfig {
    const TYPE: &'static str = "spotify_device_id";
}

/// Applies [`DeviceId`] in front of the inner service.
pub type DeviceIdLayer = EventLayer<DeviceId>;

/// Gives each event a device id and its cookie.
#[derive(Debug)]
pub struct DeviceId {
    config: SpotifyDeviceIdConfig,
}

impl EventProcessor for DeviceId {
    fn process(&self, event: &mut Event) -> Result<(), String> {
        let context = event.context.clone();
        let (name, id) = ["__spdt", "__pdst"]
            .iter()
            .find_map(|n| {
                context
                    .cookie(n)
                    .filter(|v| !v.is_empty())
                    .map(|v| (*n, v.to_owned()))
            })
            .unwrap_or_else(|| ("__spdt", random::hex32()));
        context.response.set_cookie(SetCookie {
            domain: cookie_domain(&self.config.cookie_domain, &context),
            path: Some("/".into()),
            max_age: Some(self.config.max_age_days * 86_400),
            same_site: Some(SameSite::Lax),
            secure: true,
            http_only: self.config.http_only,
            ..SetCookie::new(name, id.clone())
        });
        event
            .data_mut()
            .insert(self.config.field.clone(), Value::String(id));
        Ok(())
    }
}

/// The `Domain` attribute for `setting` (`auto`, `none` or a domain).
pub fn cookie_domain(setting: &str, context: &RequestContext) -> Option<String> {
    match setting {
        "none" => None,
        "auto" => request_host(context).and_then(|host| registrable_domain(&host)),
        domain => Some(domain.to_owned()),
    }
}

/// The host the client asked for: `Forwarded: host=`, else `X-Forwarded-Host`, else `Host`.
fn request_host(context: &RequestContext) -> Option<String> {
    let forwarded = context.header("forwarded").and_then(|v| {
        v.split([',', ';']).find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("host")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    });
    let host = forwarded
        .or_else(|| {
            context
                .header("x-forwarded-host")
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_owned())
        })
        .or_else(|| context.header("host").map(str::to_owned))?;
    // Drop a port; IPv6 literals have no registrable domain anyway.
    let host = if host.starts_with('[') {
        return None;
    } else {
        host.rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_ascii_lowercase()
    };
    (!host.is_empty()).then_some(host)
}

/// The registrable domain (eTLD+1) of `host` per the public-suffix list: `track.example.co.uk`
/// → `example.co.uk`. `None` for IP addresses and bare suffixes.
pub fn registrable_domain(host: &str) -> Option<String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    psl::domain_str(host.trim_end_matches('.')).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    fn context(headers: &[(&'static str, &'static str)]) -> RequestContext {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_static(v));
        }
        RequestContext::from_headers(map, None)
    }

    #[test]
    fn registrable_domains_come_from_the_public_suffix_list() {
        assert_eq!(
            registrable_domain("track.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable_domain("a.b.example.com").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            registrable_domain("shop.example.com.br").as_deref(),
            Some("example.com.br")
        );
        assert_eq!(registrable_domain("127.0.0.1"), None);
        assert_eq!(registrable_domain("co.uk"), None);
    }

    #[test]
    fn auto_domain_prefers_forwarded_then_x_forwarded_host_then_host() {
        let cx = context(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "sst.shop.example.de"),
            (
                "forwarded",
                "for=1.2.3.4;host=\"track.example.co.uk\";proto=https",
            ),
        ]);
        assert_eq!(cookie_domain("auto", &cx).as_deref(), Some("example.co.uk"));
        let cx = context(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "sst.shop.example.de"),
        ]);
        assert_eq!(cookie_domain("auto", &cx).as_deref(), Some("example.de"));
        let cx = context(&[("host", "track.example.com:443")]);
        assert_eq!(cookie_domain("auto", &cx).as_deref(), Some("example.com"));
        assert_eq!(cookie_domain("none", &cx), None);
        assert_eq!(
            cookie_domain("example.org", &cx).as_deref(),
            Some("example.org")
        );
        assert_eq!(
            cookie_domain("auto", &context(&[("host", "127.0.0.1:8080")])),
            None
        );
    }
}
