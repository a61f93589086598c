//! The items of a `#[job]` module, as a `macro_rules!`. The proc macro
//! reads and checks the function and its attribute, then emits one short
//! invocation of [`job_items!`](crate::__private::job_items) per job;
//! rustc expands it natively, far cheaper than it takes in the same items as
//! tokens from a proc macro, one by one (bench/README.md, "Compile cost").

/// Writes the items of a `#[job]` module but its imports: `Args`, the
/// runner `__jobq_run`, the `Job` marker and its `jobq::Job` impl, the
/// settings' constants, `enqueue`, `enqueue_many`, `builder` and the
/// registration, `result` and `wait`.
///
/// - `vis`: the items' visibility, seen from inside the module;
/// - `name`: the job's stored name;
/// - `consts`: the settings' constants (`QUEUE`, `RETRIES`, `MAX_ATTEMPTS`,
///   `PRIORITY`, `CRON`, `TIMEOUT`) the job sets, each with its value;
///   `defaults`, the others, which re-export jobq's own
///   ([`default`](crate::__private::default)): a `use` costs `cargo check`
///   less than a constant of each job's;
/// - `def`: the fields of the job's `JobDef` that differ from
///   [`DEFAULT_DEF`](crate::__private::DEFAULT_DEF), each followed by a
///   comma (a struct literal with only these type-checks faster than one
///   with every field); `requires` among them lists each injected
///   parameter's `Inject::requirement`;
/// - `args`: the type `Args`, spanned where an `Args` that falls short of
///   `jobq::Job`'s bounds is to be reported; `output`, the job's `Ok`
///   type, spanned on the return type; `args_attrs`, attributes for
///   it (a serde bound); `args_derives`, `Debug, Clone` when it derives
///   them (by name: an `ident` costs less to match than a `path`), else
///   nothing and `args_impls` writes them out;
///   `fields`, its fields;
/// - `run`: the names of the runner's context and decoded arguments, and
///   what runs between decoding and the call (argument checks, injections);
///   `call`, the call of the job function; `outcome`, the path of
///   `IntoOutcome::into_outcome` spanned on the function's return type.
///
/// `@const $vis NAME = value` writes one setting's constant with its type
/// and doc, for a job that sets it and for jobq's defaults alike.
///
/// Spans matter: `args` is a `ty` and `outcome` an `expr` fragment, which
/// keep the spans the proc macro gave them (an `ident` or `path` fragment
/// would report at the attribute instead), and the bounds of `enqueue` and
/// `enqueue_many` (and `result`) sit on the line of their names, so a wrong `db` is
/// reported once. Items are named as written here, so the module finds
/// them; jobq's own paths go through `$crate`.
#[doc(hidden)]
#[macro_export]
macro_rules! __job_items {
    (@const $vis:vis QUEUE = $value:expr) => {
        /// The queue the job goes to unless an enqueue says otherwise.
        $vis const QUEUE: &str = $value;
    };
    (@const $vis:vis RETRIES = $value:expr) => {
        /// Retries after the first failed attempt.
        $vis const RETRIES: u32 = $value;
    };
    (@const $vis:vis MAX_ATTEMPTS = $value:expr) => {
        /// Attempts in all: `RETRIES + 1`.
        $vis const MAX_ATTEMPTS: i32 = $value;
    };
    (@const $vis:vis PRIORITY = $value:expr) => {
        /// Default priority; lower runs first.
        $vis const PRIORITY: i16 = $value;
    };
    (@const $vis:vis CRON = $value:expr) => {
        /// The cron expression, for a cron job.
        $vis const CRON: ::core::option::Option<&str> = $value;
    };
    (@const $vis:vis TIMEOUT = $value:expr) => {
        /// How long one attempt may run before it is cancelled.
        $vis const TIMEOUT: ::core::option::Option<::core::time::Duration> = $value;
    };
    (
        vis: $vis:vis,
        name: $name:literal,
        consts: [$($const:ident = $value:expr),*],
        defaults: [$($default:ident),*],
        def: { $($def:tt)* },
        args: $args:ty,
        output: $output:ty,
        args_attrs: [$($args_attr:tt)*],
        args_derives: [$($debug:ident, $clone:ident)?],
        args_impls: { $($args_impl:tt)* },
        fields: { $($field:tt)* },
        run: ($cx:ident, $args_local:ident) { $($prelude:tt)* },
        call: $call:expr,
        outcome: $outcome:expr,
    ) => {
        /// The job's arguments, stored as JSON.
        #[derive(
            $crate::__private::serde::Serialize,
            $crate::__private::serde::Deserialize,
            $(::core::fmt::$debug, ::core::clone::$clone)?
        )]
        #[serde(crate = "::jobq::__private::serde")]
        $($args_attr)*
        $vis struct Args {
            $($field)*
        }

        $($args_impl)*

        // `decode` is matched rather than `?`-ed: one fewer trait to
        // resolve for each job.
        fn __jobq_run(
            $cx: $crate::__private::RunCx,
        ) -> ::core::result::Result<$crate::__private::JobFuture, $crate::__private::RunError> {
            let $args_local: Args = match $crate::__private::decode::<Job>(&$cx) {
                ::core::result::Result::Ok(args) => args,
                ::core::result::Result::Err(e) => return ::core::result::Result::Err(e),
            };
            $($prelude)*
            ::core::result::Result::Ok($crate::__private::run(
                $call,
                $outcome,
                $crate::__private::keep::<Job>,
            ))
        }

        /// Marker type for the job; implements `jobq::Job`, so it can be named
        /// in generic code and registered explicitly.
        $vis struct Job;

        // Written out rather than derived: the same impls, without the
        // derives' expansion, for each of many jobs.
        impl ::core::fmt::Debug for Job {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str("Job")
            }
        }

        impl ::core::clone::Clone for Job {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl ::core::marker::Copy for Job {}

        impl ::core::default::Default for Job {
            fn default() -> Self {
                Job
            }
        }

        impl $crate::Job for Job {
            type Args = $args;
            type Output = $output;
            const DEF: $crate::JobDef = $crate::JobDef {
                name: $name,
                $($def)*
                location: $crate::__private::Location {
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                },
                run: __jobq_run,
                ..$crate::__private::DEFAULT_DEF
            };
        }

        /// The job's stored name.
        $vis const NAME: &str = $name;
        $($crate::__job_items!(@const $vis $const = $value);)*
        $vis use $crate::__private::default::{$($default),*};

        /// Inserts one job through `db`: a `&PgPool`, a `&mut PgConnection` or a
        /// `&mut Transaction`. Inside a transaction the job exists only if the
        /// transaction commits. Returns the new job's id.
        // Each bound on the function's first line: a `db` that fails one
        // is then reported on the `#[job]` attribute once, not also as
        // "this function".
        $vis fn enqueue<'c, A: $crate::Db<'c>>(
            db: A,
            args: Args,
        ) -> $crate::BoxFuture<'c, ::core::result::Result<$crate::JobId, $crate::Error>> {
            $crate::__private::enqueue::<Job, A>(db, args)
        }

        /// Inserts many jobs with one statement through `db` (pool, connection or
        /// transaction). Returns their ids in input order.
        $vis fn enqueue_many<'c, A: $crate::Db<'c>, I: ::core::iter::IntoIterator<Item = Args>>(
            db: A,
            args: I,
        ) -> $crate::BoxFuture<
            'c,
            ::core::result::Result<$crate::__private::Vec<$crate::JobId>, $crate::Error>,
        > {
            $crate::__private::enqueue_many::<Job, A, I>(db, args)
        }

        /// Starts an enqueue with per-job options (delay, priority, queue,
        /// attempts).
        $vis fn builder(args: Args) -> $crate::Enqueue<Job> {
            $crate::Enqueue::new(args)
        }

        /// What the job `id` returned, read through `db` (pool, connection or
        /// transaction): `Some` once it has completed, `None` while it has not.
        $vis fn result<'c, A: $crate::Db<'c>>(
            db: A,
            id: $crate::JobId,
        ) -> $crate::BoxFuture<
            'c,
            ::core::result::Result<::core::option::Option<<Job as $crate::Job>::Output>, $crate::Error>,
        > {
            $crate::__private::result::<Job, A>(db, id)
        }

        /// Waits, at most `timeout`, until the job `id` finishes, and returns what
        /// it returned; woken by the job's end, not by polling. A job that ends
        /// discarded or cancelled returns that, with its last error.
        $vis fn wait(
            pool: &$crate::__private::sqlx::PgPool,
            id: $crate::JobId,
            timeout: ::core::time::Duration,
        ) -> $crate::BoxFuture<'_, ::core::result::Result<<Job as $crate::Job>::Output, $crate::WaitError>> {
            $crate::__private::wait::<Job>(pool, id, timeout)
        }

        // `submit!` writes its items inside a `const _: () = { .. };` of its
        // own.
        $crate::__private::inventory::submit! {
            $crate::__private::Registration($crate::__private::def::<Job>)
        }
    };
}
