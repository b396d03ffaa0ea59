//! `--metrics-listen`: Prometheus text on GET /metrics, with request counts labelled by the
//! matched route template (metric names are the host's choice; only the label and count are
//! asserted).

use gyre_tests::{free_local_port, App};

use crate::probe_manifest;

/// The largest sample value among lines that contain `label` (Prometheus text: `name{..} value`).
fn max_sample_with(metrics: &str, label: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && line.contains(label))
        .filter_map(|line| {
            line.rsplit_once('}')
                .map_or(line, |(_, rest)| rest)
                .split_whitespace()
                .next()
        })
        .filter_map(|value| value.parse::<f64>().ok())
        .reduce(f64::max)
}

#[test]
fn metrics_count_requests_per_matched_route() {
    let metrics_port = free_local_port();
    let host = App::new(&probe_manifest("/echo/...", ""))
        .host()
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .start();
    for path in ["/echo/a", "/echo/b", "/echo/c/d"] {
        assert_eq!(host.get(path).status, 200);
    }

    let metrics_url = host.metrics_url();
    assert_eq!(
        metrics_url,
        format!("http://127.0.0.1:{metrics_port}/metrics")
    );
    let response = host.get_absolute(&metrics_url);

    assert_eq!(response.status, 200, "{response:?}");
    let count = max_sample_with(&response.body, r#"route="/echo/...""#);
    assert!(
        count.is_some_and(|count| count >= 3.0),
        "expected a sample labelled route=\"/echo/...\" counting at least 3 requests:\n{}",
        response.body
    );
    assert!(
        !response.body.contains(r#"route="/echo/a""#),
        "metrics must use the route template, not the raw path"
    );
}
