//! The Statistics page: rates from the daemon's counters.
use super::*;

/// The fixture's stats with the first service's and its backends'
/// counters as given (the JSON of `tests/fixtures/stats.json`, edited).
fn stats_with(service: [u64; 3], b11: [u64; 3], b12: [u64; 3]) -> String {
    let fixture = [
        ([48210, 52428800, 1200], service),
        ([30000, 31457280, 800], b11),
        ([18210, 20971520, 400], b12),
    ];
    let mut out = STATS.to_owned();
    for (from, to) in fixture {
        let text = |[p, b, f]: [u64; 3]| {
            format!(r#""traffic":{{"packets":{p},"bytes":{b},"new_flows":{f}}}"#)
        };
        assert!(out.contains(&text(from)), "{}", text(from));
        out = out.replacen(&text(from), &text(to), 1);
    }
    out
}

#[tokio::test]
async fn the_statistics_page_shows_the_rates_from_the_daemons_counters() {
    let c = console();
    let reply = c.get("/stats", None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let fake = Fake::start(&c, ACTIVE);
    let (cookie, _) = session(&c).await;
    let reply = c.get("/stats", Some(&cookie)).await;
    assert_has(
        &reply,
        &[
            "No sample yet",
            r#"<meta http-equiv="refresh" content="10">"#,
        ],
    );

    let client = lb_common::api::Client::new(&c.socket);
    let t0 = std::time::Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let limit = Duration::from_secs(5);
    crate::traffic::sample(&client, &c.traffic, at(0), limit).await;
    // 10 s later: +500 packets, +1 MB, +30 flows on the service.
    fake.set_stats(stats_with(
        [48710, 53428800, 1230],
        [30300, 31757280, 820],
        [18410, 21671520, 410],
    ));
    crate::traffic::sample(&client, &c.traffic, at(10), limit).await;
    let reply = c.get("/stats", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    // The service's tiles, then each backend's (exact rates: deltas / 10 s).
    let rates: Vec<&str> = reply
        .body
        .split(r#"<strong data-rate=""#)
        .skip(1)
        .map(|s| s.split("</strong>").next().unwrap())
        .collect();
    assert_eq!(
        rates,
        [
            r#"packets/s">50.0 packets/s"#,
            r#"B/s">100.0 k B/s"#,
            r#"flows/s">3.0 flows/s"#,
            r#"packets/s">30.0 packets/s"#,
            r#"B/s">30.0 k B/s"#,
            r#"flows/s">2.0 flows/s"#,
            r#"packets/s">20.0 packets/s"#,
            r#"B/s">70.0 k B/s"#,
            r#"flows/s">1.0 flows/s"#,
            // The UDP service, all zero, without backends.
            r#"packets/s">0.0 packets/s"#,
            r#"B/s">0.0 B/s"#,
            r#"flows/s">0.0 flows/s"#,
        ]
    );
    assert_has(
        &reply,
        &[
            r#"<section class="card wide traffic" aria-label="tcp/198.18.0.100:80"><h2><code>tcp/198.18.0.100:80</code></h2>"#,
            "<h3>Backend 198.18.1.11:80</h3>",
            r#"<section class="card wide traffic" aria-label="udp/[2001:db8::100]:53">"#,
            r#"<a href="/stats" aria-current="page">Statistics</a>"#,
        ],
    );
    // The daemon stops answering: unknown and why, never zero.
    drop(fake);
    std::fs::remove_file(&c.socket).unwrap();
    crate::traffic::sample(&client, &c.traffic, at(20), limit).await;
    let reply = c.get("/stats", Some(&cookie)).await;
    assert_has(
        &reply,
        &[
            "The daemon did not answer the last sample: cannot reach the lb-ctl daemon",
            r#"<strong data-rate="packets/s"><span class="unknown">unknown</span></strong>"#,
            r#"<rect class="gap""#,
        ],
    );
    assert!(!reply.body.contains("0.0 packets/s"), "{}", reply.body);
    // It is back, restarted: its counters are lower. That interval starts
    // over (no negative rate); the next one has rates again.
    let fake = Fake::start(&c, ACTIVE);
    fake.set_stats(stats_with([100, 10_000, 2], [60, 6_000, 1], [40, 4_000, 1]));
    crate::traffic::sample(&client, &c.traffic, at(30), limit).await;
    let reply = c.get("/stats", Some(&cookie)).await;
    assert!(
        !reply.body.contains("\">-"),
        "a negative rate: {}",
        reply.body.split("<main").nth(1).unwrap()
    );
    assert!(!reply.body.contains("did not answer the last sample"));
    fake.set_stats(stats_with(
        [300, 30_000, 4],
        [160, 16_000, 2],
        [140, 14_000, 2],
    ));
    crate::traffic::sample(&client, &c.traffic, at(40), limit).await;
    let reply = c.get("/stats", Some(&cookie)).await;
    assert_has(
        &reply,
        &[
            r#"<strong data-rate="packets/s">20.0 packets/s</strong>"#,
            r#"<strong data-rate="B/s">2.0 k B/s</strong>"#,
        ],
    );
    assert_eq!(fake.asked(), []);
}
