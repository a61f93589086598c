//! What jobq's writes take as a database: the caller's pool, connection or
//! transaction.

use sqlx::{Acquire, Postgres};

/// A pool, connection or transaction of the sqlx jobq uses
/// ([`jobq::sqlx`](crate::sqlx), 0.9): `&PgPool`, `&mut PgConnection`,
/// `&mut PoolConnection<Postgres>` or `&mut Transaction<Postgres>`.
///
/// Every type that is `sqlx::Acquire<'c, Database = Postgres> + Send` is
/// one; the trait exists so that a type from another sqlx version, which is
/// a different type to the compiler, fails with a message naming the fix
/// instead of a list of `sqlx_core` trait errors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pool, connection or transaction of the sqlx jobq uses (0.9)",
    label = "not a `&PgPool`, `&mut PgConnection` or `&mut Transaction<Postgres>` of jobq's sqlx",
    note = "a type of another sqlx version is a different type: use `jobq::sqlx` instead of a `sqlx` of your own, or depend on `sqlx = \"0.9\"`"
)]
pub trait Db<'c>: Acquire<'c, Database = Postgres> + Send + 'c {}

impl<'c, A> Db<'c> for A where A: Acquire<'c, Database = Postgres> + Send + 'c {}
