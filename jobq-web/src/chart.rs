//! Charts drawn on the server as SVG: stacked bars of completed and failed
//! jobs per minute. No script draws them, so they show with JavaScript off
//! and under the strictest CSP.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jobq::admin::{self, Throughput};
use sqlx::PgPool;

/// Drawing area, in SVG user units (the SVG scales to its box).
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 150.0;
/// Room on the left for the axis labels, and below for the time labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 18.0;

/// The series charts draw, each kept for a twelfth of its bucket (5 s for
/// per-minute bars, 75 s for quarters of an hour): every open tab polls, and
/// a day's series reads a day of finished jobs.
#[derive(Default)]
pub(crate) struct Cache {
    series: Mutex<HashMap<SeriesKey, (Instant, Vec<Throughput>)>>,
}

/// A series: its bucket in seconds, how many buckets, which queue.
type SeriesKey = (u64, u32, Option<String>);

impl Cache {
    /// [`admin::throughput`], from the cache while fresh.
    pub async fn throughput(
        &self,
        pool: &PgPool,
        bucket: Duration,
        buckets: u32,
        queue: Option<&str>,
    ) -> jobq::Result<Vec<Throughput>> {
        let key = (bucket.as_secs(), buckets, queue.map(str::to_owned));
        let fresh_for = bucket / 12;
        if let Some((at, series)) = self.lock().get(&key)
            && at.elapsed() < fresh_for
        {
            return Ok(series.clone());
        }
        let series = admin::throughput(pool, bucket, buckets, queue).await?;
        let mut cache = self.lock();
        // Drop what went stale, so queues seen once do not pile up.
        cache.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(300));
        cache.insert(key, (Instant::now(), series.clone()));
        Ok(series)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SeriesKey, (Instant, Vec<Throughput>)>> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One bucket of the series: when it starts and what finished in it.
#[derive(Clone, Debug)]
pub(crate) struct Bucket {
    pub start: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
}

/// A bar of the chart, in SVG coordinates.
pub(crate) struct Bar {
    pub x: String,
    pub width: String,
    pub completed_y: String,
    pub completed_h: String,
    pub failed_y: String,
    pub failed_h: String,
    pub tooltip: String,
}

/// A labelled tick on an axis.
pub(crate) struct Tick {
    pub at: String,
    pub label: String,
    /// `start`, `middle` or `end`: the edge ticks keep their label inside.
    pub anchor: &'static str,
}

/// A chart ready for the template.
pub(crate) struct Chart {
    pub title: String,
    pub view_box: String,
    pub plot_left: String,
    pub plot_right: String,
    pub plot_bottom: String,
    pub bars: Vec<Bar>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub completed: i64,
    pub failed: i64,
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or
/// above `n`, so the axis reads 0, 50, 100 rather than 0, 47, 94.
fn nice_ceiling(n: f64) -> f64 {
    if n <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(n.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|candidate| *candidate >= n)
        .unwrap_or(10.0 * magnitude)
}

fn fmt(n: f64) -> String {
    format!("{n:.1}")
}

/// Per-minute rate of `count` over a bucket, for the axis and tooltips.
fn rate(count: i64, minutes: i64) -> f64 {
    count as f64 / minutes.max(1) as f64
}

fn rate_label(r: f64) -> String {
    if r >= 10.0 || r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// Draws `buckets` (oldest first, each `minutes_per_bucket` long).
pub(crate) fn stacked(title: &str, buckets: &[Bucket], minutes_per_bucket: i64) -> Chart {
    let plot_width = WIDTH - LEFT;
    let plot_height = HEIGHT - BOTTOM - 6.0;
    let top = 6.0;
    let peak = buckets
        .iter()
        .map(|b| rate(b.completed + b.failed, minutes_per_bucket))
        .fold(0.0, f64::max);
    let ceiling = nice_ceiling(peak);
    let scale = plot_height / ceiling;
    let slot = plot_width / buckets.len().max(1) as f64;
    let gap = if slot > 4.0 { 1.0 } else { 0.0 };
    let baseline = top + plot_height;

    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let completed_h = rate(b.completed, minutes_per_bucket) * scale;
            let failed_h = rate(b.failed, minutes_per_bucket) * scale;
            let per = if minutes_per_bucket == 1 {
                String::new()
            } else {
                format!(" ({minutes_per_bucket} min)")
            };
            Bar {
                x: fmt(LEFT + i as f64 * slot + gap / 2.0),
                width: fmt((slot - gap).max(0.5)),
                completed_y: fmt(baseline - completed_h),
                completed_h: fmt(completed_h),
                failed_y: fmt(baseline - completed_h - failed_h),
                failed_h: fmt(failed_h),
                tooltip: format!(
                    "{}{per}: {} completed, {} failed",
                    b.start.format("%H:%M"),
                    b.completed,
                    b.failed
                ),
            }
        })
        .collect();

    let y_ticks = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| Tick {
            at: fmt(baseline - f * plot_height),
            label: rate_label(f * ceiling),
            anchor: "end",
        })
        .collect();

    let x_ticks = if buckets.is_empty() {
        Vec::new()
    } else {
        let last = buckets.len() - 1;
        [(0, "start"), (last / 2, "middle"), (last, "end")]
            .into_iter()
            .map(|(i, anchor)| Tick {
                at: fmt(match anchor {
                    "start" => LEFT + i as f64 * slot,
                    "end" => LEFT + (i + 1) as f64 * slot,
                    _ => LEFT + (i as f64 + 0.5) * slot,
                }),
                label: buckets[i].start.format("%H:%M").to_string(),
                anchor,
            })
            .collect()
    };

    Chart {
        title: title.to_owned(),
        view_box: format!("0 0 {WIDTH} {HEIGHT}"),
        plot_left: fmt(LEFT),
        plot_right: fmt(WIDTH),
        plot_bottom: fmt(baseline),
        bars,
        y_ticks,
        x_ticks,
        completed: buckets.iter().map(|b| b.completed).sum(),
        failed: buckets.iter().map(|b| b.failed).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn nice_ceiling_rounds_up_to_one_two_or_five() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(47.0), 50.0);
        assert_eq!(nice_ceiling(120.0), 200.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }

    #[test]
    fn bars_stack_failed_on_completed_and_scale_to_the_peak() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let buckets = vec![
            Bucket {
                start,
                completed: 40,
                failed: 10,
            },
            Bucket {
                start,
                completed: 0,
                failed: 0,
            },
        ];
        let chart = stacked("t", &buckets, 1);
        // Peak 50/min: the axis tops at 50 and the first bar fills the plot.
        assert_eq!(chart.y_ticks[2].label, "50");
        let first = &chart.bars[0];
        let plot_height = HEIGHT - BOTTOM - 6.0;
        let completed_h: f64 = first.completed_h.parse().unwrap();
        let failed_h: f64 = first.failed_h.parse().unwrap();
        assert!((completed_h + failed_h - plot_height).abs() < 0.2);
        assert!((completed_h - 4.0 * failed_h).abs() < 0.2);
        assert_eq!(chart.bars[1].completed_h, "0.0");
        assert_eq!((chart.completed, chart.failed), (40, 10));
    }

    #[test]
    fn longer_buckets_are_drawn_as_per_minute_rates() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let buckets = vec![Bucket {
            start,
            completed: 150,
            failed: 0,
        }];
        let chart = stacked("t", &buckets, 15);
        assert_eq!(chart.y_ticks[2].label, "10");
        assert!(chart.bars[0].tooltip.contains("(15 min): 150 completed"));
    }
}
