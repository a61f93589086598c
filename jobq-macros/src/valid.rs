//! Stage 2: judge the attribute and the function, collecting every error, each
//! spanned on the token the user has to change.

use std::str::FromStr;
use std::time::Duration;

use crate::ast::{JobFn, ParamKind};
use crate::attr::JobAttr;
use syn::{ReturnType, Type};

/// Retries a job gets when `#[job]` does not say `retries`.
pub const DEFAULT_RETRIES: u32 = 20;
/// Retries above this are almost certainly a typo (and overflow backoff math).
const MAX_RETRIES: u32 = 1000;

/// The job's settings, every literal already parsed and checked.
pub struct Checked {
    pub name: String,
    pub aliases: Vec<String>,
    pub queue: String,
    pub retries: u32,
    pub priority: i16,
    pub timeout: Option<Duration>,
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub catch_up: String,
    pub unique_by_args: bool,
    pub unique_for: Option<Duration>,
}

/// Parses a cron expression the way the runtime does: 5 fields, or 6 with
/// seconds first, or a nickname such as `@hourly`.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// A queue name is what ends up in SQL and in metrics labels: keep it plain.
fn check_queue(queue: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if queue.is_empty() || queue.len() > 63 || !queue.chars().all(ok_char) {
        return Err(format!(
            "invalid queue name `{queue}`: use 1 to 63 characters from a-z, A-Z, 0-9, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

fn check_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid job name `{name}`: use 1 to 255 characters with no white space"
        ));
    }
    Ok(())
}

/// Checks everything; returns the settings, or every error found.
pub fn check(attr: &JobAttr, f: &JobFn, errors: &mut Vec<syn::Error>) -> Option<Checked> {
    let before = errors.len();
    let sig = &f.item.sig;
    let fn_name = sig.ident.to_string();

    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "`#[job]` needs an `async fn`; write `async fn` here",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        // `Generics` prints only `<...>`: point at the `where` clause when that is all there is.
        let generics: &dyn quote::ToTokens = if sig.generics.params.is_empty() {
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
    match &sig.output {
        ReturnType::Default => errors.push(syn::Error::new(
            sig.ident.span(),
            "a job must return a `Result`, for example `-> Result<(), MyError>` or \
             `-> anyhow::Result<()>`; an `Err` is recorded as a failed attempt",
        )),
        ReturnType::Type(_, ty) if !is_result(ty) => errors.push(syn::Error::new_spanned(
            ty,
            "a job must return a `Result`, for example `-> Result<(), MyError>` or \
             `-> anyhow::Result<()>`; an `Err` is recorded as a failed attempt",
        )),
        ReturnType::Type(..) => {}
    }

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
        if let ParamKind::Arg { ident: None, .. } = &p.kind {
            errors.push(syn::Error::new_spanned(
                &p.pat,
                "a job parameter must be a plain name such as `user_id: i64`: it becomes a field \
                 of the generated `Args` struct",
            ));
        }
    }

    let name = match &attr.name {
        Some(lit) => {
            let v = lit.value();
            if let Err(msg) = check_job_name(&v) {
                errors.push(syn::Error::new(lit.span(), msg));
            }
            v
        }
        None => fn_name.clone(),
    };

    let mut aliases = Vec::new();
    if let Some(a) = &attr.aliases {
        for lit in &a.names {
            let v = lit.value();
            if let Err(msg) = check_job_name(&v) {
                errors.push(syn::Error::new(lit.span(), msg));
            } else if v == name {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!("alias `{v}` is the job's own name; remove it"),
                ));
            } else if aliases.contains(&v) {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!("alias `{v}` is listed twice"),
                ));
            } else {
                aliases.push(v);
            }
        }
    }

    let queue = match &attr.queue {
        Some(lit) => {
            let v = lit.value();
            if let Err(msg) = check_queue(&v) {
                errors.push(syn::Error::new(lit.span(), msg));
            }
            v
        }
        None => "default".to_owned(),
    };

    let retries = match &attr.retries {
        Some(lit) => {
            match lit.base10_parse::<u32>() {
                Ok(n) if n <= MAX_RETRIES => n,
                Ok(_) => {
                    errors.push(syn::Error::new(
                        lit.span(),
                        format!("`retries` must be at most {MAX_RETRIES}"),
                    ));
                    0
                }
                Err(e) => {
                    errors.push(syn::Error::new(
                    lit.span(),
                    format!("`retries` must be a whole number of retries after the first attempt: {e}"),
                ));
                    0
                }
            }
        }
        None => DEFAULT_RETRIES,
    };

    let priority = match &attr.priority {
        Some(p) => {
            let text = if p.negative {
                format!("-{}", p.lit.base10_digits())
            } else {
                p.lit.base10_digits().to_owned()
            };
            match (p.lit.suffix().is_empty(), i16::from_str(&text)) {
                (true, Ok(v)) => v,
                _ => {
                    errors.push(syn::Error::new_spanned(
                        p,
                        "`priority` must be a whole number from -32768 to 32767 (lower runs first)",
                    ));
                    0
                }
            }
        }
        None => 0,
    };

    let timeout = attr
        .timeout
        .as_ref()
        .and_then(|lit| positive_duration(lit, "timeout", "leave it out for no timeout", errors));

    let unique_by_args = match &attr.unique {
        Some(lit) if lit.value() == "args" => true,
        Some(lit) => {
            errors.push(syn::Error::new(
                lit.span(),
                format!(
                    "unknown `unique` value `{}`: write `unique = \"args\"` (one unfinished job \
                     per distinct arguments), or set a key per enqueue with \
                     `builder(args).unique_key(..)`",
                    lit.value()
                ),
            ));
            false
        }
        None => false,
    };
    let unique_for = attr.unique_for.as_ref().and_then(|lit| {
        if attr.unique.is_none() {
            errors.push(syn::Error::new(
                lit.span(),
                "`unique_for` needs `unique = \"args\"` next to it",
            ));
        }
        positive_duration(lit, "unique_for", "leave it out for no window", errors)
    });

    let tz = attr.tz.as_ref().map(|lit| {
        let v = lit.value();
        if attr.cron.is_none() {
            errors.push(syn::Error::new(
                lit.span(),
                "`tz` applies to cron jobs: add `cron = \"...\"` or drop `tz`",
            ));
        } else if v.parse::<chrono_tz::Tz>().is_err() {
            errors.push(syn::Error::new(
                lit.span(),
                format!(
                    "unknown time zone `{v}`: use an IANA name such as \"Europe/Paris\" or \"UTC\""
                ),
            ));
        }
        v
    });
    let catch_up = match &attr.catch_up {
        Some(lit) => {
            let v = lit.value();
            if attr.cron.is_none() {
                errors.push(syn::Error::new(
                    lit.span(),
                    "`catch_up` applies to cron jobs: add `cron = \"...\"` or drop `catch_up`",
                ));
            } else if !matches!(v.as_str(), "none" | "latest" | "all") {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!("unknown `catch_up` policy `{v}`: use \"none\", \"latest\" or \"all\""),
                ));
            }
            v
        }
        None => "latest".to_owned(),
    };

    let cron = match &attr.cron {
        Some(lit) => {
            let v = lit.value();
            if let Err(msg) = parse_cron(&v) {
                // croner's messages end with a period; ours continues after them.
                let msg = msg.trim_end_matches('.');
                errors.push(syn::Error::new(
                    lit.span(),
                    format!(
                        "invalid cron expression `{v}`: {msg}; use 5 fields (minute hour day month \
                         weekday), 6 with seconds first, or a nickname such as `@hourly`"
                    ),
                ));
            }
            for p in f.args() {
                let ParamKind::Arg { ident, .. } = &p.kind else {
                    continue;
                };
                let shown = ident
                    .as_ref()
                    .map(|i| format!("`{i}`"))
                    .unwrap_or_else(|| "this parameter".to_owned());
                errors.push(syn::Error::new_spanned(
                    &p.pat,
                    format!(
                        "cron jobs take no arguments; move {shown} into the job body or drop \
                         `cron` (a cron job may take `jobq::State<T>` and `jobq::JobContext`)"
                    ),
                ));
            }
            Some(v)
        }
        None => None,
    };

    if errors.len() > before {
        return None;
    }
    Some(Checked {
        name,
        aliases,
        queue,
        retries,
        priority,
        timeout,
        cron,
        tz,
        catch_up,
        unique_by_args,
        unique_for,
    })
}

/// Parses a duration literal that must be longer than zero.
fn positive_duration(
    lit: &syn::LitStr,
    key: &str,
    if_zero: &str,
    errors: &mut Vec<syn::Error>,
) -> Option<Duration> {
    match humantime::parse_duration(&lit.value()) {
        Ok(d) if d.is_zero() => {
            errors.push(syn::Error::new(
                lit.span(),
                format!("`{key}` must be longer than zero; {if_zero}"),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(syn::Error::new(
                lit.span(),
                format!(
                    "invalid duration `{}`: {e}; write it like \"30s\", \"5m\" or \"1h 30m\"",
                    lit.value()
                ),
            ));
            None
        }
    }
}

/// `Result<..>`, `anyhow::Result<..>`, `io::Result<..>`, `MyResult<..>`: any path
/// whose last segment ends in `Result`. The generated code's trait bound catches
/// an alias that is not really a `Result`.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().ends_with("Result")),
        Type::Group(g) => is_result(&g.elem),
        Type::Paren(p) => is_result(&p.elem),
        _ => false,
    }
}
