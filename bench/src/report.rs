//! The output: one `BENCH <name> <value> <unit>` line per figure as it is
//! measured, and a closing table of figures, baselines and ratios.

use std::io::Write as _;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Machine-readable name, e.g. `enqueue_single_per_s`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit, e.g. `jobs/s`.
    pub unit: &'static str,
}

/// Every figure measured so far.
#[derive(Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
    /// Each round's value of the figures measured in interleaved rounds.
    rounds: Vec<(String, Vec<f64>)>,
}

/// Figures measured over several interleaved rounds (the disk's and the
/// host's mood drift over seconds, so back-to-back runs of one figure and
/// then another would compare two different machines). Each is recorded as
/// its median; the rounds, when more than one, are printed as a comment
/// line.
#[derive(Debug, Default)]
pub struct Rounds {
    figures: Vec<(String, &'static str, Vec<f64>)>,
}

impl Rounds {
    /// Adds one round's value of figure `name`.
    pub fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        match self.figures.iter_mut().find(|(n, ..)| *n == name) {
            Some((_, _, values)) => values.push(value),
            None => self.figures.push((name, unit, vec![value])),
        }
    }

    /// Prints each figure's rounds and records its median in `report`, in
    /// the order the figures were first added.
    pub fn record(self, report: &mut Report) {
        for (name, unit, values) in self.figures {
            if values.len() > 1 {
                let shown: Vec<String> = values.iter().map(|v| fmt_value(*v, unit)).collect();
                println!("# {name} rounds: {}", shown.join(" "));
            }
            report.record(name.clone(), median(values.clone()), unit);
            report.rounds.push((name, values));
        }
    }
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Formats `value` with the precision its unit deserves.
pub fn fmt_value(value: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{value:.3}"),
        "s" | "x" => format!("{value:.2}"),
        _ => format!("{value:.0}"),
    }
}

impl Report {
    /// Records a figure and prints its `BENCH` line at once.
    pub fn record(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        let name = name.into();
        println!("BENCH {name} {} {unit}", fmt_value(value, unit));
        let _ = std::io::stdout().flush();
        self.figures.push(Figure { name, value, unit });
    }

    /// The value of figure `name`, if measured.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }

    /// `a / b`. When both were measured in the same interleaved rounds, the
    /// median of the rounds' own ratios: each round's pair saw the same
    /// minute of the disk, while the two medians may come from different
    /// rounds.
    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        let rounds = |name: &str| {
            self.rounds
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
        };
        if let (Some(ra), Some(rb)) = (rounds(a), rounds(b))
            && ra.len() == rb.len()
            && ra.len() > 1
            && rb.iter().all(|v| *v > 0.0)
        {
            return Some(median(ra.iter().zip(rb).map(|(x, y)| x / y).collect()));
        }
        match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }

    /// Every figure, in the order measured.
    pub fn figures(&self) -> &[Figure] {
        &self.figures
    }

    /// Prints the table: each jobq figure next to its raw-SQL baseline and
    /// the ratio, then the history-scale comparison and the latencies.
    pub fn print_table(&self) {
        let mut rows: Vec<[String; 4]> = Vec::new();
        let cell = |name: &str| {
            self.get(name)
                .map_or_else(|| "-".to_owned(), |v| fmt_value(v, "jobs/s"))
        };
        // The best raw claim-and-complete cycle: what PostgreSQL itself
        // finishes per second on this machine.
        let best_raw = |prefix: &str| {
            ["b100_c4", "b500_c4"]
                .iter()
                .filter_map(|s| {
                    let name = format!("{prefix}raw_process_{s}_per_s");
                    self.get(&name).map(|v| (v, name))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
        };
        let mut pair = |label: &str, jobq: &str, base: Option<(f64, String)>| {
            if self.get(jobq).is_none() {
                return;
            }
            let (base_value, base_name) = match base {
                Some((v, n)) => (Some(v), n),
                None => (None, "-".to_owned()),
            };
            rows.push([
                label.to_owned(),
                cell(jobq),
                format!(
                    "{} ({base_name})",
                    base_value.map_or_else(|| "-".to_owned(), |v| fmt_value(v, "jobs/s"))
                ),
                self.ratio(jobq, &base_name)
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            ]);
        };
        let raw = |name: &str| self.get(name).map(|v| (v, name.to_owned()));
        pair(
            "enqueue, single, 1 client",
            "enqueue_single_per_s",
            raw("raw_insert_1c_per_s"),
        );
        pair(
            "enqueue, single, 4 clients",
            "enqueue_single_4c_per_s",
            raw("raw_insert_4c_per_s"),
        );
        pair(
            "enqueue, 4c, worker taking jobs",
            "enqueue_single_4c_idle_worker_per_s",
            raw("raw_insert_notify_4c_listener_per_s"),
        );
        pair(
            "enqueue, batch",
            "enqueue_batch_per_s",
            raw("raw_insert_batch_per_s"),
        );
        pair(
            "enqueue, batch, unique jobs",
            "enqueue_batch_unique_per_s",
            raw("raw_insert_batch_per_s"),
        );
        pair("process, 1 worker, c16", "process_c16_per_s", best_raw(""));
        pair("process, 1 worker, c64", "process_c64_per_s", best_raw(""));
        for f in &self.figures {
            if f.name.starts_with("process_2proc_") && f.name.ends_with("_per_s") {
                let label = format!(
                    "process, 2 workers, {}",
                    f.name
                        .trim_start_matches("process_2proc_")
                        .trim_end_matches("_per_s")
                );
                pair(&label, &f.name.clone(), best_raw(""));
            }
        }
        pair(
            "process, c16, with history",
            "scale_process_c16_per_s",
            best_raw("scale_"),
        );
        pair(
            "raw insert + NOTIFY, 1 client",
            "raw_insert_notify_1c_per_s",
            raw("raw_insert_1c_per_s"),
        );
        pair(
            "raw insert + NOTIFY, 4 clients",
            "raw_insert_notify_4c_per_s",
            raw("raw_insert_4c_per_s"),
        );

        if !rows.is_empty() {
            let header = [
                "figure (jobs/s)",
                "measured",
                "PostgreSQL baseline",
                "ratio",
            ];
            let widths: [usize; 4] = std::array::from_fn(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            });
            println!();
            let line = |r: &[String; 4]| {
                println!(
                    "| {:<w0$} | {:>w1$} | {:<w2$} | {:>w3$} |",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    w0 = widths[0],
                    w1 = widths[1],
                    w2 = widths[2],
                    w3 = widths[3]
                );
            };
            line(&header.map(str::to_owned));
            println!(
                "|{}|{}|{}|{}|",
                "-".repeat(widths[0] + 2),
                "-".repeat(widths[1] + 2),
                "-".repeat(widths[2] + 2),
                "-".repeat(widths[3] + 2)
            );
            for r in &rows {
                line(r);
            }
            println!(
                "ratio: for figures measured in the same interleaved rounds, the median of \
                 the rounds' own ratios"
            );
        }

        // Metrics: the same figure with the Prometheus recorder on and off.
        if let (Some(on), Some(off)) = (
            self.get("process_c16_prometheus_per_s"),
            self.get("process_c16_per_s"),
        ) {
            let ratio = self
                .ratio("process_c16_prometheus_per_s", "process_c16_per_s")
                .unwrap_or(on / off);
            println!();
            println!(
                "process c16 with the Prometheus recorder on: {} jobs/s, off: {} jobs/s, \
                 ratio {ratio:.2}",
                fmt_value(on, "jobs/s"),
                fmt_value(off, "jobs/s"),
            );
        }

        // Scale-out: 16 worker processes at concurrency 4 against one at 64
        // (the target is 0.8).
        if let (Some(many), Some(one)) = (
            self.get("process_16proc_c4_per_s"),
            self.get("process_c64_per_s"),
        ) {
            let ratio = self
                .ratio("process_16proc_c4_per_s", "process_c64_per_s")
                .unwrap_or(many / one);
            println!(
                "16 worker processes at c4: {} jobs/s, 1 at c64: {} jobs/s, ratio {ratio:.2}",
                fmt_value(many, "jobs/s"),
                fmt_value(one, "jobs/s"),
            );
        }

        // History: the same figure with and without the finished rows.
        let history = self.get("scale_history_rows");
        if let Some(rows) = history {
            println!();
            println!("with {rows:.0} finished jobs in the table (ratio: with / without history):");
            for (label, with, without, unit) in [
                (
                    "process c16",
                    "scale_process_c16_per_s",
                    "process_c16_per_s",
                    "jobs/s",
                ),
                (
                    "process c16, CPU per job",
                    "scale_process_c16_cpu_per_job",
                    "process_c16_cpu_per_job",
                    "us",
                ),
                (
                    "raw claim+complete b100 c4",
                    "scale_raw_process_b100_c4_per_s",
                    "raw_process_b100_c4_per_s",
                    "jobs/s",
                ),
                (
                    "one claim of 16 (median)",
                    "scale_claim_ms",
                    "claim_ms",
                    "ms",
                ),
            ] {
                if let (Some(w), Some(wo)) = (self.get(with), self.get(without)) {
                    println!(
                        "  {label:<28} {:>10} {unit} with, {:>10} {unit} without, ratio {:.2}",
                        fmt_value(w, unit),
                        fmt_value(wo, unit),
                        w / wo
                    );
                }
            }
        }

        if self.get("latency_p50_ms").is_some() {
            println!();
            println!("latency to handler start (ms):          p50      p95      p99");
            for (label, prefix) in [
                ("  jobq, from the enqueue's commit", "latency"),
                ("  jobq, from the enqueue call", "latency_call"),
                ("  raw LISTEN + claim, from commit", "raw_latency"),
                ("  raw LISTEN + claim, from the call", "raw_latency_call"),
            ] {
                let v = |p: &str| {
                    self.get(&format!("{prefix}_{p}_ms"))
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
                };
                println!(
                    "{label:<36} {:>8} {:>8} {:>8}",
                    v("p50"),
                    v("p95"),
                    v("p99")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_of_interleaved_rounds_pairs_the_rounds() {
        let mut report = Report::default();
        let mut rounds = Rounds::default();
        // Round by round a is 0.9, 1.1 and 0.9 of b; the medians' ratio
        // (2200 / 2000) says 1.1.
        for (a, b) in [(900.0, 1000.0), (2200.0, 2000.0), (2700.0, 3000.0)] {
            rounds.add("a", a, "jobs/s");
            rounds.add("b", b, "jobs/s");
        }
        rounds.add("c", 100.0, "jobs/s");
        rounds.record(&mut report);
        let r = report.ratio("a", "b").unwrap();
        assert!((r - 0.9).abs() < 1e-9, "{r}");
        // Without rounds to pair, the ratio of the figures.
        report.record("d", 50.0, "jobs/s");
        assert_eq!(report.ratio("d", "c"), Some(0.5));
        assert_eq!(report.ratio("a", "missing"), None);
    }
}
