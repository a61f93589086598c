//! Stage 2: judge the attribute and the function, collecting every error, each
//! spanned on the token the user has to change.
//!
//! One concern per function: the function's shape and parameters here, the
//! attribute's settings in [`settings`], the cron schedule in [`schedule`].
//! [`check`] runs them all, so one compile reports every mistake.

mod limits;
mod schedule;
mod settings;

use quote::ToTokens;
use syn::{Pat, ReturnType, Type};

use crate::ast::{Injected, JobFn, ParamKind};
use crate::attr::JobAttr;

pub use limits::Limits;
pub use schedule::{CatchUp, Schedule};

/// The job's settings, every literal already parsed and checked.
pub struct Checked {
    /// Name, queue, attempts and the other plain settings.
    pub settings: settings::Settings,
    /// When it runs by itself (cron), if it does.
    pub schedule: Schedule,
    /// Its concurrency and rate limits.
    pub limits: Limits,
}

/// Checks everything; returns the settings, or `None` when any error was
/// found (all of them are in `errors`).
pub fn check(attr: &JobAttr, f: &JobFn, errors: &mut Vec<syn::Error>) -> Option<Checked> {
    let before = errors.len();
    check_signature(f, errors);
    check_params(f, errors);
    let s = settings::check(attr, &f.item.sig.ident, errors);
    let schedule = schedule::check(attr, f, errors);
    let limits = limits::check(attr, f, errors);
    if errors.len() > before {
        return None;
    }
    Some(Checked {
        settings: s,
        schedule,
        limits,
    })
}

/// `async`, no generics, no `self`, a `Result` return type.
fn check_signature(f: &JobFn, errors: &mut Vec<syn::Error>) {
    let sig = &f.item.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "`#[job]` needs an `async fn`; write `async fn` here",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        // `Generics` prints only `<...>`: point at the `where` clause when that is all there is.
        let generics: &dyn ToTokens = if sig.generics.params.is_empty() {
            &sig.generics.where_clause
        } else {
            &sig.generics
        };
        errors.push(syn::Error::new_spanned(
            generics,
            "a job function cannot be generic: the worker must know the concrete type of every \
             argument; remove the generic parameters and name concrete types",
        ));
    }
    if let Some(r) = &f.receiver {
        errors.push(syn::Error::new(
            r.span,
            "`#[job]` goes on a free function, not a method: remove `self` and move the function \
             out of the `impl` block (pass what you need as `jobq::State<T>`)",
        ));
    }
    const NOT_RESULT: &str = "a job must return a `Result`, for example `-> Result<(), MyError>` \
                              or `-> anyhow::Result<()>`; an `Err` is recorded as a failed attempt";
    match &sig.output {
        ReturnType::Default => errors.push(syn::Error::new(sig.ident.span(), NOT_RESULT)),
        ReturnType::Type(_, ty) if !is_result(ty) => {
            errors.push(syn::Error::new_spanned(ty, NOT_RESULT))
        }
        ReturnType::Type(..) => {}
    }
}

/// Every parameter has a concrete, owned type; every argument a plain name;
/// no value is injected twice.
fn check_params(f: &JobFn, errors: &mut Vec<syn::Error>) {
    // The injected parameters seen so far, with what they inject.
    let mut injected: Vec<(&Injected, &Pat)> = Vec::new();
    for p in &f.params {
        if let Type::ImplTrait(t) = &p.ty {
            errors.push(syn::Error::new_spanned(
                t,
                "a job parameter cannot be `impl Trait`: the worker must know its concrete type",
            ));
            continue;
        }
        if let Type::Reference(r) = &p.ty {
            errors.push(syn::Error::new_spanned(
                r,
                "a job parameter must be owned: it is deserialized from the stored arguments; \
                 write the owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
            ));
            continue;
        }
        match &p.kind {
            ParamKind::Arg { ident: None, .. } => errors.push(syn::Error::new_spanned(
                &p.pat,
                "a job parameter must be a plain name such as `user_id: i64`: it becomes a field \
                 of the generated `Args` struct",
            )),
            ParamKind::Arg { .. } => {}
            ParamKind::Injected(what) => {
                if let Some((_, first)) = injected.iter().find(|(seen, _)| *seen == what) {
                    errors.push(injected_twice(what, first, &p.ty));
                } else {
                    injected.push((what, &p.pat));
                }
            }
        }
    }
}

/// The error for a second parameter injecting what `first` already does.
fn injected_twice(what: &Injected, first: &Pat, ty: &Type) -> syn::Error {
    let first = match first {
        Pat::Ident(pi) => format!("`{}`", pi.ident),
        _ => "an earlier parameter".to_owned(),
    };
    let what = match what {
        Injected::Context => "`JobContext` is",
        Injected::State(_) => "this `State` is",
    };
    let msg = format!(
        "{what} injected already, as {first}: remove this parameter (clone the first one in the \
         body if you need two)"
    );
    syn::Error::new_spanned(ty, msg)
}

/// `Result<..>`, `anyhow::Result<..>`, `io::Result<..>`, `MyResult<..>`: any path
/// whose last segment ends in `Result`. The generated code's trait bound catches
/// an alias that is not really a `Result`.
fn is_result(ty: &Type) -> bool {
    result_segment(ty).is_some()
}

/// The last segment of a return type [`is_result`] accepts, looking through
/// the groups and parentheses a `macro_rules!` `$t:ty` or the user may put
/// around it; `None` for any other type.
pub(crate) fn result_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .filter(|s| s.ident.to_string().ends_with("Result")),
        Type::Group(g) => result_segment(&g.elem),
        Type::Paren(p) => result_segment(&p.elem),
        _ => None,
    }
}
