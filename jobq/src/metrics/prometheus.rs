//! `Worker::prometheus`: the Prometheus exporter installed as the process's
//! recorder, serving what it records over HTTP (feature `prometheus`).

use std::future::Future;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The buckets of every `_seconds` histogram, in seconds: from 5 ms (a
/// queue's pick-up) to an hour (a long job), so that run times and waits
/// are histograms Prometheus can add up across workers, not per-process
/// quantiles.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Installs the Prometheus recorder as this process's global recorder and
/// binds `addr`. Returns the server, to run until `stop`. Fails when `addr`
/// cannot be bound or another recorder is installed already.
pub(crate) fn install(
    addr: SocketAddr,
    stop: CancellationToken,
) -> Result<impl Future<Output = ()> + Send + 'static> {
    let (recorder, server) = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::build)
        .map_err(|e| Error::Config(format!("cannot serve Prometheus metrics on {addr}: {e}")))?;
    metrics::set_global_recorder(recorder).map_err(|_| {
        Error::Config(format!(
            "cannot serve Prometheus metrics on {addr}: this process already has a metrics \
             recorder (a second `Worker::prometheus`, or one of its own); serve that one's \
             metrics instead"
        ))
    })?;
    tracing::info!(%addr, "serving Prometheus metrics at /metrics");
    Ok(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            served = server => {
                if let Err(e) = served {
                    tracing::error!(%addr, error = ?e, "the Prometheus metrics server stopped");
                }
            }
        }
    })
}
