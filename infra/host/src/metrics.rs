//! Request counters and latency histograms per component, rendered in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const INSTANTIATION_BUCKETS: &[f64] = &[
    0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, seconds: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, component: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{component=\"{component}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{component=\"{component}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{component=\"{component}\"}} {}", self.sum);
        let _ = writeln!(
            out,
            "{name}_count{{component=\"{component}\"}} {}",
            self.count
        );
    }
}

#[derive(Debug, Clone)]
struct ComponentMetrics {
    by_status: BTreeMap<u16, u64>,
    duration: Histogram,
    instantiation: Histogram,
}

impl Default for ComponentMetrics {
    fn default() -> Self {
        Self {
            by_status: BTreeMap::new(),
            duration: Histogram::new(DURATION_BUCKETS),
            instantiation: Histogram::new(INSTANTIATION_BUCKETS),
        }
    }
}

/// The host's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    components: Mutex<BTreeMap<String, ComponentMetrics>>,
}

impl Metrics {
    /// Records one finished request. `component` is `-` when no route matched.
    pub fn record(
        &self,
        component: &str,
        status: u16,
        duration: Duration,
        instantiation: Option<Duration>,
    ) {
        let mut components = self.components.lock().unwrap_or_else(|e| e.into_inner());
        let entry = components.entry(component.to_string()).or_default();
        *entry.by_status.entry(status).or_default() += 1;
        entry.duration.observe(duration.as_secs_f64());
        if let Some(instantiation) = instantiation {
            entry.instantiation.observe(instantiation.as_secs_f64());
        }
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        let components = self
            .components
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        out.push_str(
            "# HELP edgerag_requests_total HTTP requests answered, by component and status.\n",
        );
        out.push_str("# TYPE edgerag_requests_total counter\n");
        for (component, m) in &components {
            for (status, count) in &m.by_status {
                let _ = writeln!(
                    out,
                    "edgerag_requests_total{{component=\"{component}\",status=\"{status}\"}} {count}"
                );
            }
        }
        out.push_str("# HELP edgerag_request_duration_seconds Time to the response head.\n");
        out.push_str("# TYPE edgerag_request_duration_seconds histogram\n");
        for (component, m) in &components {
            m.duration
                .render(&mut out, "edgerag_request_duration_seconds", component);
        }
        out.push_str(
            "# HELP edgerag_instantiation_seconds Time to create a fresh instance for a request.\n",
        );
        out.push_str("# TYPE edgerag_instantiation_seconds histogram\n");
        for (component, m) in &components {
            if m.instantiation.count > 0 {
                m.instantiation
                    .render(&mut out, "edgerag_instantiation_seconds", component);
            }
        }
        out.push_str(
            "# HELP edgerag_instance_memory_peak_bytes The most linear memory one instance has held.\n",
        );
        out.push_str("# TYPE edgerag_instance_memory_peak_bytes gauge\n");
        for (component, bytes) in crate::runtime::memory_peaks() {
            let _ = writeln!(
                out,
                "edgerag_instance_memory_peak_bytes{{component=\"{component}\"}} {bytes}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.record(
            "search",
            200,
            Duration::from_micros(700),
            Some(Duration::from_micros(12)),
        );
        metrics.record(
            "search",
            200,
            Duration::from_millis(30),
            Some(Duration::from_micros(30)),
        );
        metrics.record("search", 404, Duration::from_micros(100), None);
        let text = metrics.render();
        assert!(text.contains("edgerag_requests_total{component=\"search\",status=\"200\"} 2\n"));
        assert!(text.contains("edgerag_requests_total{component=\"search\",status=\"404\"} 1\n"));
        assert!(text.contains(
            "edgerag_request_duration_seconds_bucket{component=\"search\",le=\"0.001\"} 2\n"
        ));
        assert!(text.contains(
            "edgerag_request_duration_seconds_bucket{component=\"search\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains(
            "edgerag_instantiation_seconds_bucket{component=\"search\",le=\"0.00002\"} 1\n"
        ));
        assert!(text.contains("edgerag_instantiation_seconds_count{component=\"search\"} 2\n"));
    }
}
