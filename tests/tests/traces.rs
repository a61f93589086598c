//! Traces (feature `opentelemetry`): the enqueue stores its span's W3C trace
//! context with the job, and the run's `jobq.run` span links to it. Spans go
//! through `tracing-opentelemetry` to OpenTelemetry's in-memory exporter.
//! Its own test binary: the subscriber is the process's global one.

use std::sync::OnceLock;
use std::time::Duration;

use jobq_tests::{InProcess, TestDb, always_fails, record, test_worker, wait_until};
use opentelemetry::trace::{SpanContext, SpanId, TraceId, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

const DEADLINE: Duration = Duration::from_secs(60);

/// The exporter and provider behind the global subscriber, set up once.
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static SETUP: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("jobq-tests"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        (exporter, provider)
    })
}

/// The finished spans named `name` whose attribute `key` is `value`.
fn spans(name: &str, key: &str, value: Value) -> Vec<SpanData> {
    let (exporter, provider) = exporter();
    provider.force_flush().expect("flush");
    exporter
        .get_finished_spans()
        .expect("finished spans")
        .into_iter()
        .filter(|s| s.name == name && attr(s, key) == Some(value.clone()))
        .collect()
}

/// A span's trace and span ids: what a link must name (a link read back
/// from the database is marked remote; the span itself is not).
fn ids(cx: &SpanContext) -> (TraceId, SpanId) {
    (cx.trace_id(), cx.span_id())
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_links_to_the_span_that_enqueued_it() {
    exporter();
    let db = TestDb::new("traces").await;
    // A request of the application's, which enqueues two jobs.
    let request = tracing::info_span!("handle_signup");
    let (ok, failing) = async {
        let ok = record::enqueue(&db.pool, record::Args { n: 1 })
            .await
            .unwrap();
        let failing = always_fails::enqueue(&db.pool, always_fails::Args {})
            .await
            .unwrap();
        (ok, failing)
    }
    .instrument(request)
    .await;
    let stored: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT trace_context FROM jobq_jobs WHERE id = $1")
            .bind(ok.0)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let stored = stored.expect("the enqueue stored its trace context");
    let traceparent = stored["traceparent"].as_str().expect("a traceparent");
    assert!(traceparent.starts_with("00-"), "{traceparent}");

    let worker = InProcess::start(test_worker(&db.pool));
    wait_until("both jobs to end", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state IN ('completed', 'discarded')")
            .await
            == 2
    })
    .await;
    worker.stop().await.unwrap();

    let enqueue = spans("jobq.enqueue", "id", Value::I64(ok.0));
    assert_eq!(enqueue.len(), 1, "one enqueue span: {enqueue:?}");
    let enqueue = &enqueue[0];
    assert_eq!(attr(enqueue, "kind"), Some(Value::from("record")));
    // The enqueue span is the request's child, in the request's trace.
    let (exporter, _) = exporter();
    let request: Vec<SpanData> = exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "handle_signup")
        .collect();
    assert_eq!(request.len(), 1);
    assert_eq!(enqueue.parent_span_id, request[0].span_context.span_id());
    assert_eq!(
        enqueue.span_context.trace_id(),
        request[0].span_context.trace_id()
    );
    // The traceparent stored names the enqueue's span.
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            enqueue.span_context.trace_id(),
            enqueue.span_context.span_id()
        )
    );

    let runs = spans("jobq.run", "id", Value::I64(ok.0));
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    // A trace of its own, linked to the enqueue's span.
    assert_ne!(run.span_context.trace_id(), enqueue.span_context.trace_id());
    assert_ne!(run.span_context.trace_id(), TraceId::INVALID);
    let links: Vec<_> = run.links.iter().map(|l| ids(&l.span_context)).collect();
    assert_eq!(links, vec![ids(&enqueue.span_context)]);
    assert_eq!(attr(run, "kind"), Some(Value::from("record")));
    assert_eq!(attr(run, "queue"), Some(Value::from("default")));
    assert_eq!(attr(run, "attempt"), Some(Value::I64(1)));
    assert_eq!(attr(run, "outcome"), Some(Value::from("completed")));

    // Each attempt of the failing job links to its one enqueue, and says
    // how it ended and why.
    let enqueue = spans("jobq.enqueue", "id", Value::I64(failing.0));
    let runs = spans("jobq.run", "id", Value::I64(failing.0));
    assert_eq!(runs.len(), 3, "{runs:?}");
    let mut outcomes: Vec<String> = Vec::new();
    for run in &runs {
        assert_eq!(run.links.len(), 1);
        assert_eq!(
            ids(&run.links[0].span_context),
            ids(&enqueue[0].span_context)
        );
        outcomes.push(attr(run, "outcome").expect("an outcome").to_string());
        let error = attr(run, "error").expect("an error").to_string();
        assert!(error.starts_with("boom on attempt"), "{error}");
    }
    outcomes.sort();
    assert_eq!(outcomes, ["discarded", "failed", "failed"]);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_claimed_under_a_limit_links_to_its_enqueue_too() {
    exporter();
    let db = TestDb::new("traces_limited").await;
    // Spans are the process's: ids apart from the other test's jobs.
    sqlx::query("ALTER SEQUENCE jobq_jobs_id_seq RESTART WITH 1000000")
        .execute(&db.pool)
        .await
        .unwrap();
    // A queue with a limit: its jobs are claimed by the limited claim,
    // whose function returns no trace context of its own.
    jobq::set_queue_limit(&db.pool, "traced_limited", jobq::Limit::concurrency(2))
        .await
        .unwrap();
    let jobs: Vec<jobq::JobId> = async {
        let mut jobs = Vec::new();
        for n in 0..3 {
            let id = record::builder(record::Args { n })
                .queue("traced_limited")
                .enqueue(&db.pool)
                .await
                .unwrap();
            jobs.push(id);
        }
        jobs
    }
    .instrument(tracing::info_span!("limited_request"))
    .await;
    let worker = InProcess::start(test_worker(&db.pool).queue("traced_limited", 4));
    wait_until("the limited jobs to complete", DEADLINE, || async {
        db.count("SELECT count(*) FROM jobq_jobs WHERE state = 'completed'")
            .await
            == 3
    })
    .await;
    worker.stop().await.unwrap();
    for id in jobs {
        let enqueue = spans("jobq.enqueue", "id", Value::I64(id.0));
        assert_eq!(enqueue.len(), 1, "{enqueue:?}");
        let runs = spans("jobq.run", "id", Value::I64(id.0));
        assert_eq!(runs.len(), 1, "{runs:?}");
        let links: Vec<_> = runs[0].links.iter().map(|l| ids(&l.span_context)).collect();
        assert_eq!(links, vec![ids(&enqueue[0].span_context)], "job {}", id.0);
    }
    db.cleanup().await;
}
