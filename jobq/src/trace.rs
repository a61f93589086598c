//! The W3C trace context a job carries from its enqueue to its runs (feature
//! `opentelemetry`). The enqueue stores its span's context with the job
//! (`jobq_jobs.trace_context`); each run's `jobq.run` span links to it, so a
//! trace shows the request that enqueued a job next to the job's runs, which
//! start traces of their own (a run an hour later is no child of a request
//! long answered).
//!
//! Spans are `tracing` spans, seen by OpenTelemetry through the program's
//! `tracing_opentelemetry` layer; without that layer the spans have no
//! OpenTelemetry context, and nothing is stored.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C trace context of `span` as a job stores it: the JSON object of
/// its `traceparent` (and `tracestate`, when there is one) headers. `None`
/// when OpenTelemetry does not record the span.
pub(crate) fn context_of(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    serde_json::to_string(&headers).ok()
}

/// Links `span` (a run's) to the enqueue whose context `stored` holds, as
/// [`context_of`] wrote it. A context that does not parse is ignored: a
/// missing link must not cost the job its run.
pub(crate) fn link_to_enqueue(span: &tracing::Span, stored: Option<&str>) {
    let Some(stored) = stored else {
        return;
    };
    let Ok(headers) = serde_json::from_str::<HashMap<String, String>>(stored) else {
        return;
    };
    let cx = TraceContextPropagator::new().extract(&headers);
    let enqueue = cx.span().span_context().clone();
    if enqueue.is_valid() {
        span.add_link(enqueue);
    }
}
