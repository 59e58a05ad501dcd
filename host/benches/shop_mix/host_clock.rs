//! The host's own account of a measured run, from its admin `/metrics` read
//! just before and just after: per component, the requests it served (the
//! customers' through the gateway, and the components' calls to each
//! other), their mean time from reaching the component to its response
//! head, and their mean instantiation; and how long the customers' requests
//! waited at the door on average.
//!
//! Why: the customers' latencies say how long a request took, these say
//! where. A production checkout's extra time shows as longer times in
//! orders, payments and products, each of them a chain of waits on
//! Postgres or Redis, while instantiation stays at tens of microseconds
//! (scripts/bench/where-we-stand.md). A component's time includes the
//! calls it makes to others: the gateway's includes every service's.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::support::sample;
use crate::support::shop::COMPONENTS;

/// Time from reaching a component to its response head, by component and route.
const DURATION: &str = "bazaar_http_request_duration_seconds";
/// Instantiation, by component.
const INSTANTIATION: &str = "bazaar_instantiation_seconds";
/// The wait at the door of each request admitted (none without a limit).
const DOOR: &str = "bazaar_http_admission_wait_seconds";

/// What one component did in the run.
pub struct Component {
    pub name: &'static str,
    pub requests: f64,
    pub mean_ms: f64,
    pub instantiation_us: f64,
}

/// The host's account of one run.
pub struct Account {
    elapsed: Duration,
    components: Vec<Component>,
    /// Requests admitted through the door and their mean wait there, in
    /// ms; `None` without a limit (no door, no wait measured).
    door: Option<(f64, f64)>,
}

impl Account {
    /// The run between the metrics `before` and `after`, which lasted `elapsed`.
    pub fn between(before: &str, after: &str, elapsed: Duration) -> Account {
        let delta = |metric: &str| {
            let (then, now) = (by_component(before, metric), by_component(after, metric));
            move |component: &str| now.get(component).copied().unwrap_or(0.0) - then.get(component).copied().unwrap_or(0.0)
        };
        let (count, sum) = (delta(&format!("{DURATION}_count")), delta(&format!("{DURATION}_sum")));
        let (made, making) = (delta(&format!("{INSTANTIATION}_count")), delta(&format!("{INSTANTIATION}_sum")));
        let components = COMPONENTS
            .iter()
            .map(|&name| Component {
                name,
                requests: count(name),
                mean_ms: mean(sum(name), count(name)) * 1e3,
                instantiation_us: mean(making(name), made(name)) * 1e6,
            })
            .filter(|c| c.requests > 0.0)
            .collect();
        let admitted = sample(after, &format!("{DOOR}_count")) - sample(before, &format!("{DOOR}_count"));
        let waited = sample(after, &format!("{DOOR}_sum")) - sample(before, &format!("{DOOR}_sum"));
        let door = (admitted > 0.0).then(|| (admitted, mean(waited, admitted) * 1e3));
        Account { elapsed, components, door }
    }

    /// As markdown: a table of the components, then the door.
    pub fn table(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mut out = String::new();
        writeln!(out, "| component | requests | req/s | mean ms to its response head | mean instantiation µs |").unwrap();
        writeln!(out, "| --- | ---: | ---: | ---: | ---: |").unwrap();
        for c in &self.components {
            writeln!(out, "| {} | {:.0} | {:.0} | {:.2} | {:.1} |", c.name, c.requests, c.requests / secs, c.mean_ms, c.instantiation_us).unwrap();
        }
        match self.door {
            Some((admitted, wait_ms)) => writeln!(out, "\nAt the door: {admitted:.0} requests admitted, {wait_ms:.2} ms of wait on average.").unwrap(),
            None => writeln!(out, "\nAt the door: none (no limit; a request waits only to be read).").unwrap(),
        }
        out
    }
}

/// The values of `metric` (a counter or a histogram's `_sum` or `_count`)
/// in the Prometheus text `text`, summed over every series of a component
/// (its routes).
fn by_component(text: &str, metric: &str) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric).and_then(|rest| rest.strip_prefix('{')) else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let component = labels.split("component=\"").nth(1).and_then(|rest| rest.split('"').next());
        if let (Some(component), Ok(value)) = (component, value.trim().parse::<f64>()) {
            *totals.entry(component.to_string()).or_insert(0.0) += value;
        }
    }
    totals
}

fn mean(sum: f64, count: f64) -> f64 {
    if count > 0.0 { sum / count } else { 0.0 }
}
