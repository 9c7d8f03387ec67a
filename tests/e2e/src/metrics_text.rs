//! Reading the broker's own Prometheus text (`GET /metrics`) in the suites.

/// The values of the samples of `metric` whose labels include every pair of `labels`.
pub fn samples(text: &str, metric: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            let wanted = name == metric
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok())?
        })
        .collect()
}

/// The sum of those samples (0 when there are none).
pub fn sum_of(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, metric, labels).iter().sum()
}
