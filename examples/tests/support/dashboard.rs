//! The metric names the Grafana dashboard's queries use.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

/// Every `expr` of every target of every panel (rows' nested panels
/// included) of the dashboard at `path`.
pub(crate) fn exprs(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut found = Vec::new();
    collect(&dashboard["panels"], &mut found);
    found
}

fn collect(panels: &Value, found: &mut Vec<String>) {
    for panel in panels.as_array().unwrap() {
        if let Some(nested) = panel.get("panels") {
            collect(nested, found);
        }
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = target["expr"].as_str().unwrap();
            assert!(!expr.trim().is_empty(), "{panel}");
            found.push(expr.to_owned());
        }
    }
}

/// The metric names in `expr`: identifiers `robust_producer_[a-z0-9_]+`.
pub(crate) fn metric_names(expr: &str) -> BTreeSet<String> {
    const PREFIX: &str = "robust_producer_";
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find(PREFIX) {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_ident {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}
