//! The cron schedule: `cron`, `tz` and `catch_up`, and the rule that a cron
//! job takes no arguments.

use crate::ast::{JobFn, ParamKind};
use crate::attr::JobAttr;

/// What a cron job does about ticks missed while no worker ran: the macro's
/// view of `jobq::CatchUp`, one variant each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CatchUp {
    None,
    #[default]
    Latest,
    All,
}

impl CatchUp {
    /// The policy `catch_up = ".."` names.
    fn from_name(name: &str) -> Option<CatchUp> {
        match name {
            "none" => Some(CatchUp::None),
            "latest" => Some(CatchUp::Latest),
            "all" => Some(CatchUp::All),
            _ => None,
        }
    }
}

/// The schedule, checked. `cron` is `None` for a job that is only enqueued;
/// `catch_up` then keeps its default, as `jobq::JobDef` expects.
#[derive(Default)]
pub struct Schedule {
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub catch_up: CatchUp,
}

/// Checks `tz` and `catch_up` (which need `cron`), the cron expression (by
/// the rule the runtime reads it with), and that a cron job has no arguments.
pub fn check(attr: &JobAttr, f: &JobFn, errors: &mut Vec<syn::Error>) -> Schedule {
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

    let mut catch_up = CatchUp::default();
    if let Some(lit) = &attr.catch_up {
        let v = lit.value();
        match CatchUp::from_name(&v) {
            _ if attr.cron.is_none() => errors.push(syn::Error::new(
                lit.span(),
                "`catch_up` applies to cron jobs: add `cron = \"...\"` or drop `catch_up`",
            )),
            Some(policy) => catch_up = policy,
            None => errors.push(syn::Error::new(
                lit.span(),
                format!("unknown `catch_up` policy `{v}`: use \"none\", \"latest\" or \"all\""),
            )),
        }
    }

    let cron = attr.cron.as_ref().map(|lit| {
        let v = lit.value();
        if let Err(e) = jobq_rules::parse_cron(&v) {
            errors.push(syn::Error::new(lit.span(), e));
        }
        no_arguments(f, errors);
        v
    });

    Schedule { cron, tz, catch_up }
}

/// A cron job's ticks carry no arguments: report each argument parameter.
fn no_arguments(f: &JobFn, errors: &mut Vec<syn::Error>) {
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
                "cron jobs take no arguments; move {shown} into the job body or drop `cron` (a \
                 cron job may take `jobq::State<T>` and `jobq::JobContext`)"
            ),
        ));
    }
}
