//! `GET /metrics`: the stored counters (see [`crate::metrics`]) as the Prometheus text
//! format, through the Prometheus project's own Rust client for the encoding.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `spin_osb_instances` | gauge | service, plan, status (creating, ready, failed) |
//! | `spin_osb_bindings` | gauge | service, plan, status |
//! | `spin_osb_operations_started_total` | counter | kind, service, plan |
//! | `spin_osb_operations_succeeded_total` | counter | kind, service, plan |
//! | `spin_osb_operations_failed_total` | counter | kind, service, plan |
//! | `spin_osb_operations_in_progress` | gauge | kind, service, plan |
//! | `spin_osb_operation_duration_seconds` | histogram | kind, service, plan |
//! | `spin_osb_backend_failures_total` | counter | backend, kind, failure (transient, permanent) |
//! | `spin_osb_quota_limit`, `spin_osb_quota_used` | gauge | scope (`broker`, `service`, `plan`), scope_id: limits counted all together |
//! | `spin_osb_metric_series` | gauge | (none): stored counters read by this scrape |
//!
//! "service, plan" are four labels: `service_id`, `plan_id`, and the current catalog's
//! `service` and `plan` names (empty for a plan that left the catalog).

use std::collections::{BTreeMap, HashMap};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{names, parse_series_key, series_index, DURATION_BUCKETS};
use crate::catalog::CatalogLookup;
use crate::error::OsbError;
use crate::index::parse_counter;
use crate::kv::Kv;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Labels of one series, in order.
type Labels = Vec<(String, String)>;

/// Reads every stored counter and renders the metrics. Two store calls per counter: the
/// number of counters depends on the catalog (kinds × plans × outcomes × buckets in use),
/// never on the number of instances.
pub fn render(kv: &dyn Kv, catalog: &dyn CatalogLookup) -> Result<String, OsbError> {
    let index = series_index();
    let mut counters = Vec::new();
    for slot in 1..=index.len(kv)? {
        let Some(key) = index.get(kv, slot)? else {
            continue;
        };
        let value = kv.get(&key)?.and_then(|b| parse_counter(&b)).unwrap_or(0);
        if let Some((name, labels)) = parse_series_key(&key) {
            counters.push((name.to_string(), labels.into_iter().collect(), value));
        }
    }
    let mut families = Families::derive(&counters, &mut Names::new(catalog));
    for limit in crate::quota::declared(catalog)? {
        if limit.tenant != crate::quota::Tenant::All {
            continue;
        }
        let used = crate::quota::used(kv, &limit, &crate::quota::Tenancy::default())?.unwrap_or(0);
        let labels: Labels = vec![
            ("scope".into(), limit.scope.name().into()),
            ("scope_id".into(), limit.scope_id.clone()),
        ];
        families
            .quota_limit
            .insert(labels.clone(), i64::try_from(limit.max).unwrap_or(i64::MAX));
        families
            .quota_used
            .insert(labels, i64::try_from(used).unwrap_or(i64::MAX));
    }
    let mut registry = Registry::with_prefix("spin_osb");
    registry.register_collector(Box::new(families));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .map_err(|_| OsbError::internal("the metrics could not be encoded"))?;
    Ok(text)
}

/// Catalog names of (service id, plan id), looked up once per plan.
struct Names<'a> {
    catalog: &'a dyn CatalogLookup,
    known: HashMap<(String, String), (String, String)>,
}

impl<'a> Names<'a> {
    fn new(catalog: &'a dyn CatalogLookup) -> Self {
        Names {
            catalog,
            known: HashMap::new(),
        }
    }

    /// The four plan labels of a counter's `service_id` and `plan_id`.
    fn plan_labels(&mut self, labels: &BTreeMap<String, String>) -> Labels {
        let service_id = labels.get("service_id").cloned().unwrap_or_default();
        let plan_id = labels.get("plan_id").cloned().unwrap_or_default();
        let catalog = self.catalog;
        let (service, plan) = self
            .known
            .entry((service_id.clone(), plan_id.clone()))
            .or_insert_with(|| match catalog.plan(&service_id, &plan_id) {
                Ok(plan) => (plan.service_name.clone(), plan.plan_name.clone()),
                Err(_) => Default::default(),
            })
            .clone();
        vec![
            ("service_id".into(), service_id),
            ("plan_id".into(), plan_id),
            ("service".into(), service),
            ("plan".into(), plan),
        ]
    }
}

/// One histogram series, non-cumulative buckets as stored.
#[derive(Debug, Default)]
struct Histogram {
    buckets: BTreeMap<usize, u64>,
    millis: u64,
}

/// Every metric family of a scrape, derived from the stored counters.
#[derive(Debug, Default)]
struct Families {
    instances: BTreeMap<Labels, i64>,
    bindings: BTreeMap<Labels, i64>,
    started: BTreeMap<Labels, u64>,
    succeeded: BTreeMap<Labels, u64>,
    failed: BTreeMap<Labels, u64>,
    in_progress: BTreeMap<Labels, i64>,
    durations: BTreeMap<Labels, Histogram>,
    backend_failures: BTreeMap<Labels, u64>,
    quota_limit: BTreeMap<Labels, i64>,
    quota_used: BTreeMap<Labels, i64>,
    series: usize,
}

impl Families {
    /// Records that left `from` (plan, status) for `to` in an operation's write.
    fn move_records(&mut self, labels: &BTreeMap<String, String>, count: i64, names: &mut Names) {
        let gauge = match labels.get("record").map(String::as_str) {
            Some("binding") => &mut self.bindings,
            _ => &mut self.instances,
        };
        let service_id = labels.get("service_id").cloned().unwrap_or_default();
        for (plan, status, sign) in [("from_plan", "from", -1), ("to_plan", "to", 1)] {
            let (Some(plan_id), Some(status)) = (labels.get(plan), labels.get(status)) else {
                continue;
            };
            let place: BTreeMap<String, String> = [
                ("service_id".to_string(), service_id.clone()),
                ("plan_id".to_string(), plan_id.clone()),
            ]
            .into();
            let mut series = names.plan_labels(&place);
            series.push(("status".into(), status.clone()));
            *gauge.entry(series).or_default() += sign * count;
        }
    }

    fn derive(counters: &[(String, BTreeMap<String, String>, u64)], names: &mut Names) -> Self {
        let mut families = Families {
            series: counters.len(),
            ..Default::default()
        };
        let label = |labels: &BTreeMap<String, String>, name: &str| {
            labels.get(name).cloned().unwrap_or_default()
        };
        for (name, labels, value) in counters {
            let signed = i64::try_from(*value).unwrap_or(i64::MAX);
            let with_kind = |names: &mut Names| {
                let mut series = vec![("kind".to_string(), label(labels, "kind"))];
                series.extend(names.plan_labels(labels));
                series
            };
            match name.as_str() {
                names::DROPPED => {
                    let mut series = names.plan_labels(labels);
                    series.push(("status".into(), label(labels, "status")));
                    let gauge = match label(labels, "record").as_str() {
                        "binding" => &mut families.bindings,
                        _ => &mut families.instances,
                    };
                    *gauge.entry(series).or_default() -= signed;
                }
                names::STARTED | names::FINISHED if labels.contains_key("to") => {
                    families.move_records(labels, signed, names);
                }
                _ => {}
            }
            match name.as_str() {
                names::STARTED => {
                    let series = with_kind(names);
                    *families.started.entry(series.clone()).or_default() += value;
                    *families.in_progress.entry(series).or_default() += signed;
                }
                names::FINISHED => {
                    let series = with_kind(names);
                    if label(labels, "started") == "counted" {
                        *families.in_progress.entry(series.clone()).or_default() -= signed;
                    } else {
                        *families.started.entry(series.clone()).or_default() += value;
                    }
                    let outcome = match label(labels, "outcome").as_str() {
                        "succeeded" => &mut families.succeeded,
                        _ => &mut families.failed,
                    };
                    *outcome.entry(series.clone()).or_default() += value;
                    let le = label(labels, "le");
                    let bucket = DURATION_BUCKETS
                        .iter()
                        .position(|(_, bound)| *bound == le)
                        .unwrap_or(DURATION_BUCKETS.len());
                    let histogram = families.durations.entry(series).or_default();
                    *histogram.buckets.entry(bucket).or_default() += value;
                }
                names::MILLIS => {
                    families
                        .durations
                        .entry(with_kind(names))
                        .or_default()
                        .millis += value;
                }
                names::BACKEND_FAILURES => {
                    let series = ["backend", "kind", "failure"]
                        .iter()
                        .map(|name| (name.to_string(), label(labels, name)))
                        .collect();
                    *families.backend_failures.entry(series).or_default() += value;
                }
                _ => {}
            }
        }
        // Every (kind, plan) that has run shows all three outcomes, zeros included.
        for series in families.started.keys() {
            families.succeeded.entry(series.clone()).or_default();
            families.failed.entry(series.clone()).or_default();
            families.in_progress.entry(series.clone()).or_default();
        }
        families
    }
}

fn encode_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &BTreeMap<Labels, u64>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        metric
            .encode_family(labels)?
            .encode_counter::<NoLabelSet, _, u64>(value, None)?;
    }
    Ok(())
}

fn encode_gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &BTreeMap<Labels, i64>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        metric
            .encode_family(labels)?
            .encode_gauge(&(*value).max(0))?;
    }
    Ok(())
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        encode_gauges(
            e,
            "instances",
            "Service instances by plan and status.",
            &self.instances,
        )?;
        encode_gauges(
            e,
            "bindings",
            "Service bindings by plan and status.",
            &self.bindings,
        )?;
        encode_counters(
            e,
            "operations_started",
            "Operations started.",
            &self.started,
        )?;
        encode_counters(
            e,
            "operations_succeeded",
            "Operations that succeeded.",
            &self.succeeded,
        )?;
        encode_counters(
            e,
            "operations_failed",
            "Operations that failed.",
            &self.failed,
        )?;
        encode_gauges(
            e,
            "operations_in_progress",
            "Asynchronous operations running.",
            &self.in_progress,
        )?;
        let mut metric = e.encode_descriptor(
            "operation_duration_seconds",
            "Time from an operation's start to its end.",
            None,
            MetricType::Histogram,
        )?;
        for (labels, histogram) in &self.durations {
            // Counts per bucket as stored: the encoder makes them cumulative.
            let bounds = DURATION_BUCKETS.iter().map(|(ms, _)| *ms as f64 / 1000.0);
            let buckets: Vec<(f64, u64)> = bounds
                .chain([f64::INFINITY])
                .enumerate()
                .map(|(i, bound)| (bound, histogram.buckets.get(&i).copied().unwrap_or(0)))
                .collect();
            metric
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    histogram.millis as f64 / 1000.0,
                    buckets.iter().map(|(_, n)| n).sum(),
                    &buckets,
                    None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
                )?;
        }
        encode_counters(
            e,
            "backend_failures",
            "Failed calls to a backend (Kubernetes API, BOSH director).",
            &self.backend_failures,
        )?;
        encode_gauges(
            e,
            "quota_limit",
            "Instance quota limits (counted all together).",
            &self.quota_limit,
        )?;
        encode_gauges(
            e,
            "quota_used",
            "Instances counted against each quota limit.",
            &self.quota_used,
        )?;
        let mut metric = e.encode_descriptor(
            "metric_series",
            "Stored counters this scrape read.",
            None,
            MetricType::Gauge,
        )?;
        metric.encode_gauge(&(self.series as i64))?;
        Ok(())
    }
}
