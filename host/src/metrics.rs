//! Request metrics per matched route, rendered in Prometheus' text format.
//!
//! Labelled by route template and component, never by raw path (that would be unbounded).
//! A request counts as an error when it answers 5xx or the guest failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "(unmatched)";

#[derive(Default)]
pub struct Metrics {
    /// Keyed by (route, component). A `std` mutex: held for a few additions, never across `.await`.
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
}

#[derive(Default)]
struct RouteStats {
    /// Requests by status class, `1xx` to `5xx`.
    by_class: [u64; 5],
    errors: u64,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Metrics {
    pub fn record(
        &self,
        route: &str,
        component: &str,
        status: u16,
        failed: bool,
        elapsed: Duration,
    ) {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stats = routes
            .entry((route.to_string(), component.to_string()))
            .or_default();
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        stats.by_class[class] += 1;
        if failed || status >= 500 {
            stats.errors += 1;
        }
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in stats.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        stats.count += 1;
        stats.sum_seconds += seconds;
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::new();
        out.push_str("# HELP gyre_http_requests_total HTTP requests answered, by matched route, component and status class.\n");
        out.push_str("# TYPE gyre_http_requests_total counter\n");
        for ((route, component), stats) in routes.iter() {
            for (idx, n) in stats.by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                let labels = labels(route, component);
                let _ = writeln!(
                    out,
                    "gyre_http_requests_total{{{labels},status=\"{}xx\"}} {n}",
                    idx + 1
                );
            }
        }
        out.push_str("# HELP gyre_http_request_errors_total Requests that answered 5xx or whose component failed.\n");
        out.push_str("# TYPE gyre_http_request_errors_total counter\n");
        for ((route, component), stats) in routes.iter() {
            let _ = writeln!(
                out,
                "gyre_http_request_errors_total{{{}}} {}",
                labels(route, component),
                stats.errors
            );
        }
        out.push_str("# HELP gyre_http_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE gyre_http_request_duration_seconds histogram\n");
        for ((route, component), stats) in routes.iter() {
            let labels = labels(route, component);
            for (bound, n) in BUCKETS.iter().zip(stats.buckets) {
                let _ = writeln!(
                    out,
                    "gyre_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "gyre_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                stats.count
            );
            let _ = writeln!(
                out,
                "gyre_http_request_duration_seconds_sum{{{labels}}} {}",
                stats.sum_seconds
            );
            let _ = writeln!(
                out,
                "gyre_http_request_duration_seconds_count{{{labels}}} {}",
                stats.count
            );
        }
        out
    }
}

fn labels(route: &str, component: &str) -> String {
    format!(
        "route=\"{}\",component=\"{}\"",
        escape(route),
        escape(component)
    )
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_latency_per_route() {
        let metrics = Metrics::default();
        metrics.record("/api/...", "registry", 200, false, Duration::from_millis(2));
        metrics.record("/api/...", "registry", 500, true, Duration::from_millis(20));
        metrics.record(UNMATCHED, "", 404, false, Duration::from_micros(50));
        let text = metrics.render();
        assert!(text.contains("gyre_http_requests_total{route=\"/api/...\",component=\"registry\",status=\"2xx\"} 1"), "{text}");
        assert!(text.contains("gyre_http_requests_total{route=\"/api/...\",component=\"registry\",status=\"5xx\"} 1"), "{text}");
        assert!(
            text.contains(
                "gyre_http_request_errors_total{route=\"/api/...\",component=\"registry\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.0025\"} 1"), "{text}");
        assert!(
            text.contains(
                "gyre_http_request_duration_seconds_count{route=\"(unmatched)\",component=\"\"} 1"
            ),
            "{text}"
        );
    }
}
