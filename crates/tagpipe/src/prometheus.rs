//! The Prometheus recorder behind `/metrics`, and the rendering of tagpipe's fixed-bucket
//! histograms ([`fixed_histogram`]) and striped counters ([`striped`]) next to the recorder's
//! metrics, with the exporter's own formatting helpers.

use metrics_exporter_prometheus::formatting::{
    write_help_line, write_metric_line, write_type_line,
};
use metrics_exporter_prometheus::{LabelSet, Matcher, PrometheusBuilder, PrometheusHandle};
use tagpipe_core::fixed_histogram::{self, Snapshot};
use tagpipe_core::series::SeriesId;
use tagpipe_core::striped::{self, CounterSnapshot};

/// How often the recorder's histogram samples are drained when nobody scrapes `/metrics`.
pub(crate) const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The Prometheus recorder behind `/metrics` (rendered on request; no listener of its own).
/// Returns its handle for the periodic upkeep.
pub(crate) fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new();
    let builder = match builder.set_buckets_for_metric(
        Matcher::Suffix("_seconds".into()),
        &tagpipe_core::fixed_histogram::SECONDS_BUCKETS,
    ) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics buckets not set");
            return None;
        }
    };
    match builder.install_recorder() {
        Ok(handle) => {
            let rendering = handle.clone();
            tagpipe_core::telemetry::set_renderer(move || {
                rendering.run_upkeep();
                let mut text = rendering.render();
                write_fixed_histograms(&mut text, &fixed_histogram::snapshots());
                write_striped_counters(&mut text, &striped::counter_snapshots());
                text
            });
            metrics::gauge!("tagpipe_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    }
}

/// Appends `series` as Prometheus metric families: one `# HELP`/`# TYPE` block per name (of
/// type `kind`), each with the lines `write` writes for every series of that name.
fn write_families<T>(
    out: &mut String,
    series: &[T],
    id: impl Fn(&T) -> &SeriesId,
    kind: &str,
    write: impl Fn(&mut String, &T),
) {
    let mut names: Vec<(&str, &str)> = Vec::new();
    for one in series {
        let SeriesId { name, help, .. } = *id(one);
        if !names.iter().any(|(known, _)| *known == name) {
            names.push((name, help));
        }
    }
    for (name, help) in names {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        write_help_line(out, name, None, None, help);
        write_type_line(out, name, None, None, kind);
        for one in series.iter().filter(|s| id(s).name == name) {
            write(out, one);
        }
    }
}

/// Appends `snapshots` as Prometheus histograms, one `# HELP`/`# TYPE` block per name.
fn write_fixed_histograms(out: &mut String, snapshots: &[Snapshot]) {
    write_families(
        out,
        snapshots,
        |s| &s.id,
        "histogram",
        |out, series| {
            let name = series.id.name;
            let labels = label_set(&series.id);
            let buckets = fixed_histogram::SECONDS_BUCKETS
                .iter()
                .map(f64::to_string)
                .zip(series.buckets)
                .chain([("+Inf".to_owned(), series.count)]);
            for (bound, count) in buckets {
                write_metric_line(
                    out,
                    name,
                    Some("bucket"),
                    &labels,
                    Some(("le", bound)),
                    count,
                    None,
                );
            }
            write_metric_line::<&str, f64>(out, name, Some("sum"), &labels, None, series.sum, None);
            write_metric_line::<&str, u64>(
                out,
                name,
                Some("count"),
                &labels,
                None,
                series.count,
                None,
            );
        },
    );
}

/// Appends `snapshots` as Prometheus counters, one `# HELP`/`# TYPE` block per name.
fn write_striped_counters(out: &mut String, snapshots: &[CounterSnapshot]) {
    write_families(
        out,
        snapshots,
        |s| &s.id,
        "counter",
        |out, series| {
            let labels = label_set(&series.id);
            write_metric_line::<&str, u64>(
                out,
                series.id.name,
                None,
                &labels,
                None,
                series.value,
                None,
            );
        },
    );
}

/// A series' labels as the exporter writes them (escaped).
// No global labels: an empty map of the exporter's own type, which it does not re-export.
#[allow(clippy::default_trait_access)]
fn label_set(id: &SeriesId) -> LabelSet {
    let labels: Vec<metrics::Label> = id
        .labels
        .iter()
        .map(|(key, value)| metrics::Label::new(key.clone(), value.clone()))
        .collect();
    LabelSet::from_key_and_global(
        &metrics::Key::from_parts(id.name, labels),
        &Default::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &'static str, labels: &[(&str, &str)], count: u64) -> Snapshot {
        let mut buckets = [count; 15];
        buckets[..2].fill(count.saturating_sub(1));
        Snapshot {
            id: SeriesId::new(name, "A test.", labels),
            buckets,
            count,
            sum: 60.0037,
        }
    }

    #[test]
    fn histograms_render_as_prometheus_text_with_escaped_labels() {
        let mut out = String::new();
        write_fixed_histograms(
            &mut out,
            &[snapshot(
                "test_seconds",
                &[("source", "http"), ("endpoint", "ga\"4")],
                4,
            )],
        );
        let labels = r#"source="http",endpoint="ga\"4""#;
        for line in [
            "# HELP test_seconds A test.".to_owned(),
            "# TYPE test_seconds histogram".to_owned(),
            format!(r#"test_seconds_bucket{{{labels},le="0.0005"}} 3"#),
            format!(r#"test_seconds_bucket{{{labels},le="0.0025"}} 4"#),
            format!(r#"test_seconds_bucket{{{labels},le="30"}} 4"#),
            format!(r#"test_seconds_bucket{{{labels},le="+Inf"}} 4"#),
            format!("test_seconds_sum{{{labels}}} 60.0037"),
            format!("test_seconds_count{{{labels}}} 4"),
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }

    #[test]
    fn counters_render_one_block_per_name_after_the_recorder_metrics() {
        let counter = |name, labels: &[(&str, &str)], value| CounterSnapshot {
            id: SeriesId::new(name, "Counted.", labels),
            value,
        };
        let mut out = String::from("# TYPE other counter\nother 1\n");
        write_striped_counters(
            &mut out,
            &[
                counter("test_requests_total", &[("status", "204")], 7),
                counter("test_bare_total", &[], 0),
                counter("test_requests_total", &[("status", "4\"00")], 1),
            ],
        );
        assert_eq!(out.matches("# TYPE test_requests_total counter").count(), 1);
        for line in [
            "# HELP test_requests_total Counted.",
            r#"test_requests_total{status="204"} 7"#,
            r#"test_requests_total{status="4\"00"} 1"#,
            "# TYPE test_bare_total counter",
            "test_bare_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
        assert!(
            out.starts_with("# TYPE other counter\nother 1\n\n# HELP"),
            "{out}"
        );
    }

    #[test]
    fn one_block_per_name_and_no_braces_without_labels() {
        let mut out = String::from("# TYPE other counter\nother 1\n");
        write_fixed_histograms(
            &mut out,
            &[
                snapshot("test_block_seconds", &[("k", "a")], 1),
                snapshot("test_bare_seconds", &[], 1),
                snapshot("test_block_seconds", &[("k", "b")], 0),
            ],
        );
        assert_eq!(
            out.matches("# TYPE test_block_seconds histogram").count(),
            1
        );
        assert!(
            out.contains("\n\n# HELP test_block_seconds A test.\n"),
            "{out}"
        );
        assert!(
            out.contains("test_block_seconds_count{k=\"a\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("test_block_seconds_count{k=\"b\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("test_bare_seconds_bucket{le=\"0.001\"} 0\n"),
            "{out}"
        );
        assert!(out.contains("test_bare_seconds_sum 60.0037\n"), "{out}");
        assert!(out.contains("test_bare_seconds_count 1\n"), "{out}");
    }
}
