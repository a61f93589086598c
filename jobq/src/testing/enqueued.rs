//! Reading enqueued jobs back, typed: [`enqueued`], [`assert_enqueued`],
//! [`refute_enqueued`], and the filters they share ([`Enqueued`]).

use std::fmt::{self, Write as _};
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::db::Db;
use crate::job::{Job, JobId, JobState};
use crate::store::{self, StoredJob};

/// How many jobs a failure message lists at most.
const LISTED: i64 = 50;

/// The jobs of type `J` enqueued through `db`, with their arguments, in id
/// order: by default those that have not finished (available, scheduled,
/// running or retryable); the filters of [`Enqueued`] narrow it.
///
/// `db` is a `&PgPool`, a `&mut PgConnection` or the caller's open
/// `&mut Transaction`: read in a transaction, it shows that transaction's
/// jobs before they are committed.
///
/// ```no_run
/// # #[jobq::job(queue = "email")]
/// # async fn send_email(to: String) -> Result<(), std::io::Error> { Ok(()) }
/// # async fn demo(pool: sqlx::PgPool) {
/// use jobq::testing::enqueued;
///
/// let jobs = enqueued::<send_email::Job>(&pool).queue("email").await;
/// let (_id, args) = &jobs[0];
/// assert_eq!(args.to, "ada@example.com");
/// # }
/// # fn main() {}
/// ```
///
/// # Panics
///
/// When the database cannot be read, or a job's stored arguments do not
/// decode as `J::Args`.
#[track_caller]
pub fn enqueued<'c, J: Job>(db: impl Db<'c>) -> Enqueued<'c, J> {
    Enqueued::new(db, |_: &J::Args| true, Check::List)
}

/// Passes when at least one job of type `J` whose arguments satisfy `matches`
/// is enqueued through `db` (with [`count`](Enqueued::count), exactly that
/// many); panics otherwise, saying what was expected and listing every job
/// stored, each with its kind, arguments and why it did not match. Returns
/// the matching jobs.
///
/// Looks at jobs that have not finished unless told otherwise
/// ([`state`](Enqueued::state), [`any_state`](Enqueued::any_state)). `db` is a
/// pool, a connection or the caller's open transaction, whose uncommitted
/// jobs it then sees.
///
/// ```no_run
/// # #[jobq::job(queue = "email")]
/// # async fn send_email(to: String) -> Result<(), std::io::Error> { Ok(()) }
/// # async fn demo(pool: sqlx::PgPool) {
/// use std::time::Duration;
/// use jobq::testing::assert_enqueued;
///
/// assert_enqueued::<send_email::Job>(&pool, |args| args.to == "ada@example.com")
///     .queue("email")
///     .scheduled_in(Duration::from_secs(3600), Duration::from_secs(5))
///     .await;
/// # }
/// # fn main() {}
/// ```
///
/// # Panics
///
/// When no job matches (or not [`count`](Enqueued::count) jobs), or the
/// database cannot be read.
#[track_caller]
pub fn assert_enqueued<'c, J: Job>(
    db: impl Db<'c>,
    matches: impl Fn(&J::Args) -> bool + Send + 'c,
) -> Enqueued<'c, J> {
    Enqueued::new(db, matches, Check::Assert { count: None })
}

/// Passes when no job of type `J` whose arguments satisfy `matches` is
/// enqueued through `db`; panics otherwise, listing the jobs that match.
/// `|_| true` refutes every job of the type.
///
/// Looks at jobs that have not finished unless told otherwise, like
/// [`assert_enqueued`]; through a pool it does not see what an open
/// transaction enqueued and has not committed yet.
///
/// # Panics
///
/// When a job matches, or the database cannot be read.
#[track_caller]
pub fn refute_enqueued<'c, J: Job>(
    db: impl Db<'c>,
    matches: impl Fn(&J::Args) -> bool + Send + 'c,
) -> Enqueued<'c, J> {
    Enqueued::new(db, matches, Check::Refute)
}

/// What the check does with the jobs that match.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// Returns them.
    List,
    /// Panics unless some match (exactly `count`, when given).
    Assert { count: Option<usize> },
    /// Panics if any match.
    Refute,
}

/// A look at the enqueued jobs of type `J`, made by [`enqueued`],
/// [`assert_enqueued`] or [`refute_enqueued`], narrowed by its filters and
/// run by `.await`. It resolves to the matching jobs, id and arguments, in id
/// order.
///
/// Every filter must hold for a job to match. Without a state filter only
/// jobs that have not finished match.
#[must_use = "nothing is checked until it is `.await`ed"]
pub struct Enqueued<'c, J: Job> {
    /// Reads and checks the jobs, given the final check and filters: the
    /// database and the predicate, whatever their types, are inside.
    look: Look<'c, J>,
    check: Check,
    filter: Filter,
    caller: &'static Location<'static>,
}

/// The jobs that matched.
type Found<J> = Vec<(JobId, <J as Job>::Args)>;

/// A look, waiting for its check and filters.
type Look<'c, J> = Box<
    dyn FnOnce(
            Check,
            Filter,
            &'static Location<'static>,
        ) -> Pin<Box<dyn Future<Output = Found<J>> + Send + 'c>>
        + Send
        + 'c,
>;

/// The filters of one look, besides the arguments.
#[derive(Debug, Clone, Default)]
struct Filter {
    queue: Option<String>,
    states: Option<Vec<JobState>>,
    priority: Option<i16>,
    scheduled: Option<Scheduled>,
}

/// When a job must be due, within a tolerance.
#[derive(Debug, Clone, Copy)]
enum Scheduled {
    At(DateTime<Utc>, Duration),
    In(Duration, Duration),
}

impl<'c, J: Job> Enqueued<'c, J> {
    #[track_caller]
    fn new<D, P>(db: D, matches: P, check: Check) -> Self
    where
        D: Db<'c>,
        P: Fn(&J::Args) -> bool + Send + 'c,
    {
        Enqueued {
            look: Box::new(move |check, filter, caller| {
                Box::pin(look::<J, D, P>(db, matches, check, filter, caller))
            }),
            check,
            filter: Filter::default(),
            caller: Location::caller(),
        }
    }

    /// Only jobs in `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.filter.queue = Some(queue.into());
        self
    }

    /// Only jobs in `state`; call it again to allow another state. Replaces
    /// the default, the states of jobs that have not finished.
    pub fn state(mut self, state: JobState) -> Self {
        self.filter.states.get_or_insert_with(Vec::new).push(state);
        self
    }

    /// Jobs in any state, finished ones too.
    pub fn any_state(mut self) -> Self {
        self.filter.states = Some(JobState::ALL.to_vec());
        self
    }

    /// Only jobs of priority `priority`.
    pub fn priority(mut self, priority: i16) -> Self {
        self.filter.priority = Some(priority);
        self
    }

    /// Only jobs due at `at`, give or take `tolerance`.
    pub fn scheduled_at(mut self, at: DateTime<Utc>, tolerance: Duration) -> Self {
        self.filter.scheduled = Some(Scheduled::At(at, tolerance));
        self
    }

    /// Only jobs due `delay` after the check runs, give or take `tolerance`,
    /// measured on this machine's clock as `builder(..).delay(..)` is: a job
    /// enqueued with `.delay(d)` a moment ago matches `scheduled_in(d, tol)`
    /// when that moment is within `tol`.
    pub fn scheduled_in(mut self, delay: Duration, tolerance: Duration) -> Self {
        self.filter.scheduled = Some(Scheduled::In(delay, tolerance));
        self
    }

    /// For [`assert_enqueued`]: exactly `count` jobs must match, rather than
    /// at least one. (`count(0)` is [`refute_enqueued`].)
    pub fn count(mut self, count: usize) -> Self {
        if let Check::Assert { count: c } = &mut self.check {
            *c = Some(count);
        }
        self
    }
}

/// Reads the jobs of type `J` through `db` and checks them.
fn look<'c, J, D, P>(
    db: D,
    matches: P,
    check: Check,
    filter: Filter,
    caller: &'static Location<'static>,
) -> impl Future<Output = Found<J>> + Send + 'c
where
    J: Job,
    D: Db<'c>,
    P: Fn(&J::Args) -> bool + Send + 'c,
{
    let what = Described::<J>::new(check, &filter);
    async move {
        let mut conn = match db.acquire().await {
            Ok(conn) => conn,
            Err(e) => fail(&what, caller, format!("cannot reach the database: {e}")),
        };
        let names: Vec<&str> = J::DEF.names().collect();
        let (rows, _) = match store::stored_jobs(&mut conn, Some(&names), i64::MAX).await {
            Ok(rows) => rows,
            Err(e) => fail(&what, caller, format!("cannot read the jobs: {e}")),
        };
        let now = Utc::now();
        let mut found = Vec::new();
        let mut verdicts = Vec::with_capacity(rows.len());
        for row in &rows {
            let verdict = filter.verdict(row, now).and_then(|()| {
                let args: J::Args = serde_json::from_str(&row.args)
                    .map_err(|e| Miss::Undecodable(e.to_string()))?;
                if matches(&args) {
                    found.push((JobId(row.id), args));
                    Ok(())
                } else {
                    Err(Miss::Args)
                }
            });
            verdicts.push((row.id, verdict));
        }
        let problem = match check {
            Check::List => verdicts.iter().find_map(|(id, v)| match v {
                Err(miss @ Miss::Undecodable(_)) => Some(format!("job {id}: {miss}")),
                _ => None,
            }),
            Check::Assert { count: None } if found.is_empty() => Some("no job matched".to_owned()),
            Check::Assert { count: Some(n) } if found.len() != n => Some(format!(
                "expected {n} matching job{}, found {}",
                plural(n),
                found.len()
            )),
            Check::Refute if !found.is_empty() => Some(format!(
                "{} job{} matched",
                found.len(),
                plural(found.len())
            )),
            _ => None,
        };
        let Some(problem) = problem else {
            return found;
        };
        // Every job, whatever its kind: the one enqueued by mistake is
        // often of another.
        let listing = match store::stored_jobs(&mut conn, None, LISTED).await {
            Ok((all, total)) => listing(&all, total, &names, &verdicts),
            Err(e) => format!("(cannot list the jobs: {e})"),
        };
        fail(&what, caller, format!("{problem}\n{listing}"))
    }
}

impl<'c, J: Job> IntoFuture for Enqueued<'c, J> {
    type Output = Vec<(JobId, J::Args)>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'c>>;

    fn into_future(self) -> Self::IntoFuture {
        (self.look)(self.check, self.filter, self.caller)
    }
}

impl Filter {
    /// Why `row` fails a filter, or `Ok` when it passes them all.
    fn verdict(&self, row: &StoredJob, now: DateTime<Utc>) -> Result<(), Miss> {
        let states = self.states.as_deref().unwrap_or(&JobState::UNFINISHED);
        if !states.contains(&row.state) {
            return Err(Miss::Filter(format!("it is {}", row.state)));
        }
        if let Some(q) = &self.queue
            && *q != row.queue
        {
            return Err(Miss::Filter(format!("its queue is `{}`", row.queue)));
        }
        if let Some(p) = self.priority
            && p != row.priority
        {
            return Err(Miss::Filter(format!("its priority is {}", row.priority)));
        }
        if let Some(s) = self.scheduled {
            let (at, tolerance) = s.at(now);
            let off = (row.scheduled_at - at).abs();
            if off > chrono::Duration::from_std(tolerance).unwrap_or(chrono::TimeDelta::MAX) {
                return Err(Miss::Filter(format!(
                    "it is due {} than expected",
                    if row.scheduled_at > at {
                        format!("{} later", Seconds(off))
                    } else {
                        format!("{} earlier", Seconds(off))
                    }
                )));
            }
        }
        Ok(())
    }
}

impl Scheduled {
    /// The expected due time and its tolerance, for a check run at `now`.
    fn at(self, now: DateTime<Utc>) -> (DateTime<Utc>, Duration) {
        match self {
            Scheduled::At(at, tolerance) => (at, tolerance),
            Scheduled::In(delay, tolerance) => {
                let at = chrono::Duration::from_std(delay)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                (at, tolerance)
            }
        }
    }
}

/// Why a job of the kind looked for does not match.
#[derive(Debug)]
enum Miss {
    /// A filter other than the arguments', and how the job differs.
    Filter(String),
    /// Its stored arguments do not decode, with serde's message.
    Undecodable(String),
    /// The predicate refused its arguments.
    Args,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Filter(how) => f.write_str(how),
            Miss::Undecodable(e) => write!(f, "its args do not decode: {e}"),
            Miss::Args => f.write_str("its args do not match"),
        }
    }
}

/// A duration in seconds with milliseconds, for messages.
struct Seconds(chrono::TimeDelta);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.0.num_milliseconds() as f64 / 1000.0)
    }
}

/// What a look expected, for its failure message.
struct Described<J> {
    /// `assert_enqueued::<app::send_email::Job>`
    head: String,
    /// `a `send_email` job (...) whose args match`
    expected: String,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> Described<J> {
    fn new(check: Check, filter: &Filter) -> Self {
        let verb = match check {
            Check::List => "enqueued",
            Check::Assert { .. } => "assert_enqueued",
            Check::Refute => "refute_enqueued",
        };
        let states = filter.states.as_deref().unwrap_or(&JobState::UNFINISHED);
        let mut conditions = vec![if states.len() == JobState::ALL.len() {
            "any state".to_owned()
        } else {
            states
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        }];
        if let Some(q) = &filter.queue {
            conditions.push(format!("queue `{q}`"));
        }
        if let Some(p) = filter.priority {
            conditions.push(format!("priority {p}"));
        }
        match filter.scheduled {
            Some(Scheduled::At(at, tol)) => {
                conditions.push(format!("due at {at} ± {tol:?}"));
            }
            Some(Scheduled::In(delay, tol)) => {
                conditions.push(format!("due in {delay:?} ± {tol:?}"));
            }
            None => {}
        }
        Described {
            head: format!("{verb}::<{}>", std::any::type_name::<J>()),
            expected: format!(
                "a `{}` job ({}){}",
                J::DEF.name,
                conditions.join("; "),
                match check {
                    Check::List => "",
                    _ => " whose args match",
                }
            ),
            _job: PhantomData,
        }
    }
}

/// The jobs stored, one a line, each of the looked-for kinds with its
/// verdict.
fn listing(
    all: &[StoredJob],
    total: i64,
    names: &[&str],
    verdicts: &[(i64, Result<(), Miss>)],
) -> String {
    if all.is_empty() {
        return "no job is stored at all".to_owned();
    }
    let mut out = format!(
        "jobs stored ({total}{}, by id):",
        if total > all.len() as i64 {
            format!(", the first {}", all.len())
        } else {
            String::new()
        }
    );
    for row in all {
        let mut args = row.args.clone();
        if args.len() > 300 {
            let mut cut = 300;
            while !args.is_char_boundary(cut) {
                cut -= 1;
            }
            args.truncate(cut);
            args.push('…');
        }
        let _ = write!(
            out,
            "\n  #{} {} {args} (queue `{}`, {}, priority {}, due {})",
            row.id,
            row.kind,
            row.queue,
            row.state,
            row.priority,
            row.scheduled_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
        );
        if names.contains(&row.kind.as_str()) {
            match verdicts.iter().find(|(id, _)| *id == row.id) {
                Some((_, Ok(()))) => out.push_str(": matches"),
                Some((_, Err(why))) => {
                    let _ = write!(out, ": no match, {why}");
                }
                None => {}
            }
        }
    }
    out
}

/// Panics with a look's failure message.
#[track_caller]
fn fail<J>(what: &Described<J>, caller: &Location<'_>, message: String) -> ! {
    let (problem, listing) = message.split_once('\n').unwrap_or((&message, ""));
    panic!(
        "{} at {caller}: {problem}\nexpected: {}\n{listing}",
        what.head, what.expected
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
