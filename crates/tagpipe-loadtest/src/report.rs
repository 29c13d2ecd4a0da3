//! The report: one row per scenario with the medians of its runs, the GA4/ceiling ratio, the
//! targets, and the commands behind every figure.

use std::fmt::Write as _;

use crate::scenarios::{RunFigures, Scenario};

/// The median of some figures (the lower middle one for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// The medians of one scenario's runs.
fn medians(runs: &[RunFigures]) -> RunFigures {
    let m = |f: fn(&RunFigures) -> f64| median(runs.iter().map(f).collect());
    RunFigures {
        requests_per_second: m(|r| r.requests_per_second),
        events_per_second: m(|r| r.events_per_second),
        p50_ms: m(|r| r.p50_ms),
        p99_ms: m(|r| r.p99_ms),
        half_rate_p99_ms: m(|r| r.half_rate_p99_ms),
        half_rate_rps: m(|r| r.half_rate_rps),
        cpu_seconds_per_million: m(|r| r.cpu_seconds_per_million),
        peak_rss_mib: m(|r| r.peak_rss_mib),
        idle_rss_mib: m(|r| r.idle_rss_mib),
        startup_ms: m(|r| r.startup_ms),
        accepted_events: runs.iter().map(|r| r.accepted_events).sum(),
        delivered_events: runs.iter().map(|r| r.delivered_events).sum(),
        errors: runs.iter().map(|r| r.errors).sum(),
        commands: runs.first().map(|r| r.commands.clone()).unwrap_or_default(),
    }
}

/// The markdown report.
pub fn render(results: &[(Scenario, Vec<RunFigures>)], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}\n");
    out.push_str(
        "| scenario | requests/s | events/s | p50 ms | p99 ms | p99 ms at ½ rate (req/s) | server CPU s per 1M events | peak RSS MiB | idle RSS MiB | start → ready ms | accepted → delivered |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (scenario, runs) in results {
        let r = medians(runs);
        let delivered = if *scenario == Scenario::Ceiling {
            "—".to_owned()
        } else if scenario.sinks() == 0 {
            // `ga4-refused`: accepted, then skipped by consent.
            format!(
                "{} → {} (none may arrive)",
                r.accepted_events, r.delivered_events
            )
        } else {
            format!("{} → {}", r.accepted_events, r.delivered_events)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} ({:.0}) | {:.2} | {:.1} | {:.1} | {:.0} | {delivered} |",
            scenario.name(),
            r.requests_per_second,
            r.events_per_second,
            r.p50_ms,
            r.p99_ms,
            r.half_rate_p99_ms,
            r.half_rate_rps,
            r.cpu_seconds_per_million,
            r.peak_rss_mib,
            r.idle_rss_mib,
            r.startup_ms,
        );
    }
    if let Some(sentence) = ga4_ratio(results) {
        let _ = writeln!(out, "\n{sentence}");
    }
    out.push_str(
        "\nCommands (per scenario: the server, the full-speed load, the half-rate load):\n\n",
    );
    for (scenario, runs) in results {
        if let Some(first) = runs.first() {
            let _ = writeln!(out, "- {}:", scenario.name());
            for c in &first.commands {
                let _ = writeln!(out, "  - `{c}`");
            }
        }
    }
    out
}

/// The GA4 / ceiling ratio of requests/s: of the medians, and with several rounds also per
/// round (the two runs of a round, minutes apart, met similar background load) with the median
/// of the rounds' ratios.
fn ga4_ratio(results: &[(Scenario, Vec<RunFigures>)]) -> Option<String> {
    let runs = |wanted: Scenario| {
        results
            .iter()
            .find(|(scenario, _)| *scenario == wanted)
            .map(|(_, runs)| runs.as_slice())
    };
    let (ceiling, ga4) = (runs(Scenario::Ceiling)?, runs(Scenario::Ga4)?);
    let ratio = |ga4: f64, ceiling: f64| ga4 / ceiling.max(1.0) * 100.0;
    let rps = |runs: &[RunFigures]| median(runs.iter().map(|r| r.requests_per_second).collect());
    let mut sentence = format!(
        "GA4 single hits reach **{:.0}%** of the hyper-204 ceiling's requests/s (ratio of the \
         medians).",
        ratio(rps(ga4), rps(ceiling))
    );
    let rounds: Vec<f64> = ga4
        .iter()
        .zip(ceiling)
        .map(|(g, c)| ratio(g.requests_per_second, c.requests_per_second))
        .collect();
    if rounds.len() > 1 {
        let each: Vec<String> = rounds.iter().map(|r| format!("{r:.0}%")).collect();
        let _ = write!(
            sentence,
            " Round by round: {} (median **{:.0}%**).",
            each.join(" / "),
            median(rounds)
        );
    }
    Some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(rates: &[f64]) -> Vec<RunFigures> {
        rates
            .iter()
            .map(|&requests_per_second| RunFigures {
                requests_per_second,
                ..RunFigures::default()
            })
            .collect()
    }

    #[test]
    fn the_ga4_ratio_is_given_of_the_medians_and_round_by_round() {
        // Round 2 is a slow round for both: its own ratio is 60 %, the ratio of medians 50 %.
        let results = [
            (Scenario::Ceiling, runs(&[100.0, 60.0, 120.0])),
            (Scenario::Ga4, runs(&[55.0, 36.0, 50.0])),
            (Scenario::Batches, runs(&[1.0, 1.0, 1.0])),
        ];
        let report = render(&results, "header");
        assert!(
            report.contains(
                "reach **50%** of the hyper-204 ceiling's requests/s (ratio of the medians). \
                 Round by round: 55% / 60% / 42% (median **55%**)."
            ),
            "{report}"
        );
        let one_round = [
            (Scenario::Ceiling, runs(&[100.0])),
            (Scenario::Ga4, runs(&[61.0])),
        ];
        let report = render(&one_round, "header");
        assert!(report.contains("reach **61%**"), "{report}");
        assert!(!report.contains("Round by round"), "{report}");
        let no_ceiling = [(Scenario::Ga4, runs(&[61.0]))];
        assert!(!render(&no_ceiling, "header").contains("ceiling's requests/s"));
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(vec![4.0, 1.0, 3.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!(median(vec![]).abs() < f64::EPSILON);
    }
}
