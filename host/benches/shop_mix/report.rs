//! The results as markdown: a table per run (each kind, then all), and a
//! summary of every run against the goals.
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::load::Stats;
use crate::mix::Kind;

/// What one run of the mix gave, for the summary.
pub struct Run {
    pub mode: String,
    pub clients: usize,
    /// The shop's `--max-concurrent-requests`.
    pub admitted: String,
    pub stats: Stats,
    /// `None`: not checked (a shop the driver did not start).
    pub violations: Option<usize>,
    /// CPU the driver itself used, in cores (it shares the machine).
    pub driver_cores: f64,
    /// CPU the whole machine used, in cores.
    pub machine_cores: f64,
}

fn ms(h: &Histogram<u64>, quantile: f64) -> String {
    if h.is_empty() { "-".into() } else { format!("{:.1}", h.value_at_quantile(quantile) as f64 / 1000.0) }
}

/// The table of one run.
pub fn run_table(run: &Run) -> String {
    let stats = &run.stats;
    let secs = stats.elapsed.as_secs_f64();
    let mut out = String::new();
    writeln!(out, "| kind | count | share | req/s | p50 ms | p99 ms | errors | cache hits |").unwrap();
    writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |").unwrap();
    let total = stats.total().max(1);
    let hits = |hits: u64, count: u64| format!("{:.0}%", 100.0 * hits as f64 / count.max(1) as f64);
    for kind in Kind::ALL {
        let h = &stats.latency[kind.index()];
        writeln!(
            out,
            "| {} | {} | {:.1}% | {:.0} | {} | {} | {} | {} |",
            kind.name(),
            h.len(),
            100.0 * h.len() as f64 / total as f64,
            h.len() as f64 / secs,
            ms(h, 0.50),
            ms(h, 0.99),
            stats.errors[kind.index()],
            hits(stats.cache_hits[kind.index()], h.len())
        )
        .unwrap();
    }
    let all = stats.all();
    writeln!(
        out,
        "| **all** | {} | 100% | **{:.0}** | {} | **{}** | **{}** | {} |",
        all.len(),
        all.len() as f64 / secs,
        ms(&all, 0.50),
        ms(&all, 0.99),
        stats.total_errors(),
        hits(stats.cache_hits.iter().sum(), all.len())
    )
    .unwrap();
    out
}

/// One line per run, and whether it meets the goals: 3,000 req/s, p99 under
/// 25 ms and no error embedded; production within 2x of embedded (the run
/// with the same clients and admission limit).
pub fn summary(runs: &[Run]) -> String {
    let mut out = String::new();
    writeln!(out, "| mode | clients | admitted at once | req/s | p50 ms | p99 ms | errors | consistency | driver CPU | machine CPU | goal |").unwrap();
    writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |").unwrap();
    for run in runs {
        let all = run.stats.all();
        let rate = all.len() as f64 / run.stats.elapsed.as_secs_f64();
        let p99_ms = all.value_at_quantile(0.99) as f64 / 1000.0;
        let goal = match run.mode.as_str() {
            "production" => match runs.iter().find(|r| r.mode == "embedded" && r.clients == run.clients && r.admitted == run.admitted) {
                Some(embedded) => {
                    let e = embedded.stats.all();
                    let e_rate = e.len() as f64 / embedded.stats.elapsed.as_secs_f64();
                    let e_p99 = e.value_at_quantile(0.99) as f64 / 1000.0;
                    let ok = rate * 2.0 >= e_rate && p99_ms <= 2.0 * e_p99;
                    format!("{} ({:.1}x the req/s, {:.1}x the p99 of embedded)", mark(ok), rate / e_rate, p99_ms / e_p99)
                }
                None => "n/a (no embedded run to compare)".into(),
            },
            _ => {
                let ok = rate >= 3000.0 && p99_ms < 25.0 && run.stats.total_errors() == 0;
                format!("{} (≥ 3,000 req/s, p99 < 25 ms, 0 errors)", mark(ok))
            }
        };
        let consistency = match run.violations {
            None => "not checked".to_string(),
            Some(0) => "ok".to_string(),
            Some(n) => format!("**{n} violations**"),
        };
        writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.2} cores | {:.2} cores | {} |",
            run.mode,
            run.clients,
            run.admitted,
            rate,
            all.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms,
            run.stats.total_errors(),
            consistency,
            run.driver_cores,
            run.machine_cores,
            goal
        )
        .unwrap();
    }
    out
}

fn mark(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}
