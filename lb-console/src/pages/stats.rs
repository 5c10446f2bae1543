//! Statistics: per service and per backend, packets, bytes and new flows
//! per second over the last minutes (`crate::traffic`), as small charts
//! drawn on the server in inline SVG (no script): a line where there are
//! rates, a shaded band where there is none (the daemon did not answer,
//! the counters started over), never a line drawn through it at zero. The
//! page reloads itself every sampling interval (`<meta http-equiv=refresh>`,
//! which the content security policy allows: no script).
use std::time::{Duration, Instant};

use maud::{Markup, html};

use super::{Nav, app_refreshing, unknown};
use crate::traffic::{History, Key, Point, Rates};

/// The chart's drawing box (the SVG scales it to the tile's width).
const W: f64 = 300.0;
const H: f64 = 64.0;

/// `12`, `3.5`, `12.3 k`, `4.0 M`: a rate, short.
pub fn short(value: f64) -> String {
    let (value, unit) = if value >= 1e9 {
        (value / 1e9, " G")
    } else if value >= 1e6 {
        (value / 1e6, " M")
    } else if value >= 1e3 {
        (value / 1e3, " k")
    } else {
        (value, "")
    };
    if unit.is_empty() && value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}{unit}")
    }
}

/// What a chart shows of the rates.
#[derive(Clone, Copy)]
struct Measure {
    title: &'static str,
    unit: &'static str,
    pick: fn(&Rates) -> f64,
}

const MEASURES: [Measure; 3] = [
    Measure {
        title: "Packets",
        unit: "packets/s",
        pick: |r| r.packets,
    },
    Measure {
        title: "Bytes",
        unit: "B/s",
        pick: |r| r.bytes,
    },
    Measure {
        title: "New flows",
        unit: "flows/s",
        pick: |r| r.new_flows,
    },
];

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// How long ago, in words: `10 min`, `90 s`.
fn ago(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 120 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else if s == 0 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{s} s")
    }
}

/// The SVG of one measure of a series: x from `end - window` to `end`, y
/// from 0 to the largest value. Lines join consecutive points with rates;
/// a stretch without (from the last point with rates before a gap to the
/// first after it) is a shaded band.
fn chart(points: &[Point], end: Instant, window: Duration, m: Measure, label: &str) -> Markup {
    let start = end.checked_sub(window).unwrap_or(end);
    let span = window.as_secs_f64().max(1e-9);
    let x = |at: Instant| W * (at.saturating_duration_since(start).as_secs_f64() / span).min(1.0);
    let max = points
        .iter()
        .filter_map(|p| p.rates.as_ref().map(m.pick))
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let y = |v: f64| H - 2.0 - (H - 4.0) * (v / top);
    let mut lines: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut gaps: Vec<(f64, f64)> = Vec::new();
    let mut gap_from: Option<f64> = None;
    let mut previous_x = 0.0;
    let mut in_line = false;
    for p in points.iter().filter(|p| p.at >= start) {
        match p.rates.as_ref() {
            Some(r) => {
                let point = (x(p.at), y((m.pick)(r)));
                if let Some(from) = gap_from.take() {
                    gaps.push((from, point.0));
                }
                match lines.last_mut() {
                    Some(line) if in_line => line.push(point),
                    _ => {
                        lines.push(vec![point]);
                        in_line = true;
                    }
                }
                previous_x = point.0;
            }
            None => {
                if gap_from.is_none() {
                    gap_from = Some(if in_line { previous_x } else { x(p.at) });
                }
                in_line = false;
            }
        }
    }
    if let Some(from) = gap_from {
        gaps.push((from, W));
    }
    html! {
        svg.chart viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img" aria-label=(label) {
            line.base x1="0" y1=(f(H - 2.0)) x2=(W) y2=(f(H - 2.0)) {}
            @for (a, b) in &gaps {
                rect.gap x=(f(*a)) y="0" width=(f((b - a).max(2.0))) height=(H) {}
            }
            @for l in &lines {
                @if l.len() == 1 {
                    circle.dot cx=(f(l[0].0)) cy=(f(l[0].1)) r="2" {}
                } @else {
                    polyline.line points=(l.iter().map(|(a, b)| format!("{},{}", f(*a), f(*b))).collect::<Vec<_>>().join(" ")) {}
                }
            }
        }
    }
}

/// One series: its three measures, each with its latest value and chart.
fn series(history: &History, key: &Key, end: Instant, name: &str) -> Markup {
    let points = history.points(key);
    let now = history.now(key);
    let window = history.window();
    html! {
        div.series {
            h3 { (name) }
            div.rates {
                @for m in MEASURES {
                    div.tile {
                        div.value {
                            span.sub { (m.title) }
                            strong data-rate=(m.unit) {
                                @match now {
                                    Some(r) => { (short((m.pick)(&r))) " " (m.unit) }
                                    None => (unknown()),
                                }
                            }
                        }
                        (chart(&points, end, window, m, &format!("{} of {name} over the last {}", m.unit, ago(window))))
                        div.axis.sub {
                            span { "−" (ago(window)) }
                            span {
                                "max "
                                (short(points.iter().filter_map(|p| p.rates.as_ref().map(m.pick)).fold(0.0, f64::max)))
                            }
                            span { "last sample" }
                        }
                    }
                }
            }
        }
    }
}

/// How often the page reloads itself at most.
pub const RELOAD: Duration = Duration::from_secs(10);

/// The page.
pub fn page(nav: &Nav, history: &History) -> String {
    let refresh = history.interval().max(RELOAD).as_secs();
    let window = ago(history.window());
    app_refreshing(
        nav,
        refresh,
        html! {
            section.card.wide.note {
                p {
                    "Per second, over the last " (window) ", from this node's daemon, asked every "
                    (ago(history.interval())) "; the page reloads itself every " (refresh) " s. "
                    "A shaded stretch has no rates: the daemon did not answer, or its counters started over."
                }
                @if let Some(error) = history.last().and_then(|l| l.error.as_deref()) {
                    p.error role="status" { "The daemon did not answer the last sample: " (error) }
                }
            }
            @match history.last() {
                None => {
                    section.card.wide { h2 { "Traffic" } p.sub { "No sample yet: the first rates show two samples after the console started." } }
                }
                Some(last) => {
                    @if history.keys().next().is_none() {
                        section.card.wide { h2 { "Traffic" } p.sub { "No services." } }
                    }
                    @for key in history.keys() {
                        @if let Key::Service(name) = key {
                            section.card.wide.traffic aria-label=(name) {
                                h2 { code { (name) } }
                                (series(history, key, last.at, "Service"))
                                @for backend in history.keys() {
                                    @if let Key::Backend(service, address) = backend {
                                        @if service == name {
                                            (series(history, backend, last.at, &format!("Backend {address}")))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::Section;

    fn nav() -> Nav<'static> {
        Nav {
            host: "node-1",
            version: "1.2.3",
            user: "admin",
            csrf: "t",
            section: Section::Stats,
        }
    }

    #[test]
    fn rates_are_short() {
        for (v, s) in [
            (0.0, "0.0"),
            (0.25, "0.2"),
            (12.0, "12.0"),
            (100.0, "100"),
            (999.0, "999"),
            (1000.0, "1.0 k"),
            (12_345.0, "12.3 k"),
            (4_000_000.0, "4.0 M"),
            (2.5e9, "2.5 G"),
        ] {
            assert_eq!(short(v), s, "{v}");
        }
    }

    fn rates(packets: f64) -> Option<Rates> {
        Some(Rates {
            packets,
            bytes: packets * 100.0,
            new_flows: 0.0,
        })
    }

    #[test]
    fn a_chart_breaks_its_line_at_a_gap_and_shades_it() {
        let t0 = Instant::now();
        let s = |i: u64| t0 + Duration::from_secs(10 * i);
        let points = [
            Point {
                at: s(1),
                rates: rates(10.0),
            },
            Point {
                at: s(2),
                rates: rates(20.0),
            },
            Point {
                at: s(3),
                rates: None,
            },
            Point {
                at: s(5),
                rates: rates(5.0),
            },
        ];
        // 100 s across: 3 px a second.
        let svg = chart(
            &points,
            s(10),
            Duration::from_secs(100),
            MEASURES[0],
            "packets",
        )
        .into_string();
        // 20 is the top (y 2), 10 half way (y 32), 5 at y 47.
        assert!(
            svg.contains(r#"<polyline class="line" points="30.0,32.0 60.0,2.0"></polyline>"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect class="gap" x="60.0" y="0" width="90.0" height="64"></rect>"#),
            "{svg}"
        );
        assert!(svg.contains(r#"<circle class="dot" cx="150.0" cy="47.0" r="2"></circle>"#));
        // Nothing at zero where there was no answer.
        assert!(!svg.contains(",62.0"), "{svg}");
        // A gap at the end runs to the edge.
        let svg = chart(
            &points[..3],
            s(10),
            Duration::from_secs(100),
            MEASURES[0],
            "p",
        )
        .into_string();
        assert!(
            svg.contains(r#"<rect class="gap" x="60.0" y="0" width="240.0""#),
            "{svg}"
        );
    }

    #[test]
    fn no_sample_yet_says_so() {
        let html = page(&nav(), &History::default());
        assert!(html.contains("No sample yet"));
        assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
        assert!(html.contains(r#"<a href="/stats" aria-current="page">Statistics</a>"#));
        assert!(!html.contains("<script"));
    }
}
