//! The job's settings: its names, queue, retries, priority, timeout and
//! uniqueness.

use std::str::FromStr;
use std::time::Duration;

use jobq_rules::{DEFAULT_PRIORITY, DEFAULT_QUEUE, DEFAULT_RETRIES};
use syn::{Ident, LitStr};

use crate::attr::JobAttr;

/// Retries above this are almost certainly a typo (and overflow backoff math).
const MAX_RETRIES: u32 = 1000;

/// The settings, checked.
pub struct Settings {
    pub name: String,
    pub aliases: Vec<String>,
    pub queue: String,
    pub retries: u32,
    pub priority: i16,
    pub timeout: Option<Duration>,
    pub unique_by_args: bool,
    pub unique_for: Option<Duration>,
}

/// Checks every setting; each error goes to `errors`, and its setting takes
/// a placeholder value.
pub fn check(attr: &JobAttr, fn_name: &Ident, errors: &mut Vec<syn::Error>) -> Settings {
    // In the attribute's documented order, so errors come out in that order.
    let name = job_name(attr, fn_name, errors);
    let aliases = aliases(attr, &name, errors);
    let queue = queue(attr, errors);
    let retries = retries(attr, errors);
    let priority = priority(attr, errors);
    let timeout = attr
        .timeout
        .as_ref()
        .and_then(|lit| positive_duration(lit, "timeout", "leave it out for no timeout", errors));
    let (unique_by_args, unique_for) = uniqueness(attr, errors);
    Settings {
        name,
        aliases,
        queue,
        retries,
        priority,
        timeout,
        unique_by_args,
        unique_for,
    }
}

fn check_job_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "invalid job name `{name}`: use 1 to 255 characters with no white space"
        ));
    }
    Ok(())
}

/// `name = ".."`, else the function's name.
fn job_name(attr: &JobAttr, fn_name: &Ident, errors: &mut Vec<syn::Error>) -> String {
    let Some(lit) = &attr.name else {
        return fn_name.to_string();
    };
    let v = lit.value();
    if let Err(msg) = check_job_name(&v) {
        errors.push(syn::Error::new(lit.span(), msg));
    }
    v
}

/// `aliases = [..]`: valid names, none the job's own name, none twice.
fn aliases(attr: &JobAttr, name: &str, errors: &mut Vec<syn::Error>) -> Vec<String> {
    let mut aliases = Vec::new();
    let Some(a) = &attr.aliases else {
        return aliases;
    };
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
    aliases
}

/// `queue = ".."` by the rule the runtime checks too, else `"default"`.
fn queue(attr: &JobAttr, errors: &mut Vec<syn::Error>) -> String {
    let Some(lit) = &attr.queue else {
        return DEFAULT_QUEUE.to_owned();
    };
    let v = lit.value();
    if let Err(e) = jobq_rules::check_queue_name(&v) {
        errors.push(syn::Error::new(lit.span(), e.to_string()));
    }
    v
}

/// `retries = N`, at most [`MAX_RETRIES`].
fn retries(attr: &JobAttr, errors: &mut Vec<syn::Error>) -> u32 {
    let Some(lit) = &attr.retries else {
        return DEFAULT_RETRIES;
    };
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

/// `priority = N`, an unsuffixed `i16`.
fn priority(attr: &JobAttr, errors: &mut Vec<syn::Error>) -> i16 {
    let Some(p) = &attr.priority else {
        return DEFAULT_PRIORITY;
    };
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

/// `unique = "args"` and its window `unique_for = ".."`.
fn uniqueness(attr: &JobAttr, errors: &mut Vec<syn::Error>) -> (bool, Option<Duration>) {
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
    (unique_by_args, unique_for)
}

/// Parses a duration literal that must be longer than zero.
fn positive_duration(
    lit: &LitStr,
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
