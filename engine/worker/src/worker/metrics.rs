//! Per-batch metrics as CloudWatch embedded metric format (EMF) lines on stdout: the
//! log line IS the metric, so a worker needs no CloudWatch API calls or permissions,
//! and the same lines are readable locally.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::batch::BatchStats;

/// CloudWatch namespace of the worker's metrics.
pub const NAMESPACE: &str = "Sphinx/Worker";

/// What one batch did, beyond the model's own counters.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub stats: BatchStats,
    /// Pages whose result was written (including ones already done before).
    pub pages_done: usize,
    /// Pages recorded as failed for good.
    pub pages_failed: usize,
    /// Messages handed back to the queue (transient faults, shutdown).
    pub released: usize,
    /// Wall time from the first message received to the last one deleted.
    pub wall: Duration,
}

/// The EMF JSON line of a batch report (dimension: `Service`).
pub fn emf_line(service: &str, report: &BatchReport) -> String {
    let secs = report.wall.as_secs_f64().max(1e-9);
    let s = &report.stats;
    let mut metrics: Vec<(&str, &str, f64)> = vec![
        ("Pages", "Count", report.pages_done as f64),
        ("PagesFailed", "Count", report.pages_failed as f64),
        ("MessagesReleased", "Count", report.released as f64),
        (
            "PagesPerSecond",
            "Count/Second",
            report.pages_done as f64 / secs,
        ),
        (
            "TokensPerSecond",
            "Count/Second",
            s.generated_tokens as f64 / secs,
        ),
        ("EncodeMs", "Milliseconds", ms(s.encode)),
        ("PrefillMs", "Milliseconds", ms(s.prefill)),
        ("DecodeMs", "Milliseconds", ms(s.decode)),
        ("BatchMs", "Milliseconds", ms(report.wall)),
        ("ViewsEncoded", "Count", s.views as f64),
        ("RowsJoined", "Count", s.joined as f64),
        ("DecodeStepsGraphed", "Count", s.graph_replays as f64),
    ];
    // The mean confidence of the batch's answers (0..1), only when it has some: a
    // falling average says the documents no longer look like the training data.
    if s.scored_answers > 0 {
        metrics.push((
            "AnswerConfidence",
            "None",
            s.confidence_sum / s.scored_answers as f64,
        ));
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    root.insert("Service".into(), Value::from(service));
    for (name, _, value) in &metrics {
        root.insert((*name).into(), Value::from(*value));
    }
    root.insert("GeneratedTokens".into(), Value::from(s.generated_tokens));
    Value::Object(root).to_string()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_metric_has_a_value() {
        let report = BatchReport {
            stats: BatchStats {
                pages: 4,
                generated_tokens: 100,
                ..Default::default()
            },
            pages_done: 4,
            wall: Duration::from_secs(2),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&emf_line("serve", &report)).unwrap();
        let declared = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(!declared.is_empty());
        for m in declared {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} has no value");
        }
        assert_eq!(v["PagesPerSecond"], 2.0);
        assert_eq!(v["TokensPerSecond"], 50.0);
        assert_eq!(v["Service"], "serve");
        // No answer had a confidence: no confidence metric (a 0 would drag the mean).
        assert!(v.get("AnswerConfidence").is_none());
    }

    /// The batch's mean answer confidence is declared and given when it has answers.
    #[test]
    fn answer_confidence_is_the_mean_of_the_batch() {
        let report = BatchReport {
            stats: BatchStats {
                scored_answers: 4,
                confidence_sum: 3.0,
                ..Default::default()
            },
            wall: Duration::from_secs(1),
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&emf_line("serve", &report)).unwrap();
        assert_eq!(v["AnswerConfidence"], 0.75);
        let declared = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert!(declared.iter().any(|m| m["Name"] == "AnswerConfidence"));
    }
}
