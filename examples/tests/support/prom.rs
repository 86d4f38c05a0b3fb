//! A tiny parser of Prometheus' text format: `name{labels} value` lines,
//! `#` lines skipped.

use std::collections::{BTreeMap, BTreeSet};

/// One sample's identity: name and labels, sorted, without `service`.
type Series = (String, Vec<(String, String)>);

/// A parsed scrape of one service.
#[derive(Debug)]
pub(crate) struct Scrape {
    samples: BTreeMap<Series, f64>,
    pub(crate) text: String,
}

impl Scrape {
    /// Parses `text`; every sample must carry `service="{service}"`.
    pub(crate) fn parse(text: &str, service: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').unwrap())),
                None => (series, Vec::new()),
            };
            let mut labels: Vec<_> = labels
                .into_iter()
                .filter(|(k, v)| {
                    if k == "service" {
                        assert_eq!(v, service, "{line}");
                    }
                    k != "service"
                })
                .collect();
            labels.sort();
            assert!(
                samples.insert((name.to_owned(), labels), value).is_none(),
                "{line} twice"
            );
        }
        Self {
            samples,
            text: text.to_owned(),
        }
    }

    /// The value of `name` with exactly `labels` (besides `service`).
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        let key = (name.to_owned(), labels);
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no {key:?} in\n{}", self.text))
    }

    /// The sum of `name` over every label set.
    pub(crate) fn sum(&self, name: &str) -> f64 {
        let values: Vec<f64> = self
            .samples
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| *v)
            .collect();
        assert!(!values.is_empty(), "no {name} in\n{}", self.text);
        values.iter().sum()
    }

    /// The one value of `label` whose series of `name` is 1 (all others 0).
    pub(crate) fn one_of(&self, name: &str, label: &str) -> String {
        let mut on = Vec::new();
        let mut count = 0;
        for ((n, labels), value) in &self.samples {
            if n != name {
                continue;
            }
            count += 1;
            let [(k, v)] = labels.as_slice() else {
                panic!("{name}: labels {labels:?}")
            };
            assert_eq!(k, label);
            match *value {
                1.0 => on.push(v.clone()),
                0.0 => {}
                other => panic!("{name}{{{label}={v}}} = {other}"),
            }
        }
        assert!(count >= 3, "{name}: {count} series");
        assert_eq!(on.len(), 1, "{name}: {on:?}");
        on.remove(0)
    }

    /// Every series name in the scrape.
    pub(crate) fn names(&self) -> BTreeSet<&str> {
        self.samples.keys().map(|(n, _)| n.as_str()).collect()
    }
}

/// `k="v",k2="v2"` (values without escapes, as these series have).
fn labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let v = v.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
            assert!(!v.contains('\\'), "{pair}");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}
