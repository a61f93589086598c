//! The job's limits: `concurrency`, `rate` and `partition`.

use quote::ToTokens;

use crate::ast::{JobFn, ParamKind};
use crate::attr::JobAttr;

/// The most attempts a concurrency limit allows at once; more is a typo.
const MAX_CONCURRENCY: u32 = 1_000_000;

/// The limits, checked.
#[derive(Default)]
pub struct Limits {
    pub concurrency: Option<u32>,
    /// Attempts per window, and the window in seconds.
    pub rate: Option<(u32, u64)>,
    /// The partitioning argument's name in the stored arguments.
    pub partition: Option<String>,
}

/// Checks `concurrency = N`, `rate = "N/W"` by the rule the runtime shares,
/// and that `partition` names an argument of the job and comes with a limit.
pub fn check(attr: &JobAttr, f: &JobFn, errors: &mut Vec<syn::Error>) -> Limits {
    let concurrency = attr
        .concurrency
        .as_ref()
        .and_then(|lit| match lit.base10_parse::<u32>() {
            Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Some(n),
            _ => {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!(
                        "`concurrency` must be a whole number from 1 to {MAX_CONCURRENCY}: how \
                         many attempts of this job may run at once across all workers"
                    ),
                ));
                None
            }
        });
    let rate = attr
        .rate
        .as_ref()
        .and_then(|lit| match jobq_rules::parse_rate(&lit.value()) {
            Ok(r) => Some((r.count, r.per_secs)),
            Err(e) => {
                errors.push(syn::Error::new(lit.span(), e.to_string()));
                None
            }
        });
    let partition = attr.partition.as_ref().and_then(|lit| {
        if attr.concurrency.is_none() && attr.rate.is_none() {
            errors.push(syn::Error::new(
                lit.span(),
                "`partition` splits a limit: add `concurrency = N` or `rate = \"N/1s\"` next to it",
            ));
        }
        partition(lit, f, errors)
    });
    Limits {
        concurrency,
        rate,
        partition,
    }
}

/// The argument `partition = ".."` names, as it is stored.
fn partition(lit: &syn::LitStr, f: &JobFn, errors: &mut Vec<syn::Error>) -> Option<String> {
    let wanted = lit.value();
    let injected = f.params.iter().any(|p| {
        matches!(p.kind, ParamKind::Injected(_))
            && matches!(&p.pat, syn::Pat::Ident(pi) if pi.ident == wanted.as_str())
    });
    if injected {
        errors.push(syn::Error::new(
            lit.span(),
            format!(
                "cannot partition by `{wanted}`: the worker injects it, it is not stored with \
                 the job; partition by one of the job's arguments"
            ),
        ));
        return None;
    }
    let mut names = Vec::new();
    for p in f.args() {
        let ParamKind::Arg {
            ident: Some(ident),
            serde_attrs,
        } = &p.kind
        else {
            continue;
        };
        if *ident != wanted.as_str() {
            names.push(format!("`{ident}`"));
            continue;
        }
        // Stored under another name, or not at all: the limit key reads the
        // stored arguments by this name.
        let renamed = serde_attrs.iter().any(|a| {
            let text = a.meta.to_token_stream().to_string();
            ["rename", "flatten", "skip"]
                .iter()
                .any(|w| text.contains(w))
        });
        if renamed {
            errors.push(syn::Error::new(
                lit.span(),
                format!(
                    "cannot partition by `{wanted}`: it is stored under another name (or not \
                     at all) by its `#[serde(..)]`; partition by an argument without \
                     `rename`, `flatten` or `skip`"
                ),
            ));
            return None;
        }
        return Some(wanted);
    }
    let known = if names.is_empty() {
        "the job has no arguments".to_owned()
    } else {
        format!("its arguments are {}", names.join(", "))
    };
    errors.push(syn::Error::new(
        lit.span(),
        format!("`partition` names `{wanted}`, which is not an argument of this job; {known}"),
    ));
    None
}
