//! Stage 3: write the code. Generated code names only `::jobq::...` (its
//! `__private` module for what is not public API) and `::core::...`; locals
//! start with `__jobq_`.

mod types;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Visibility;
use syn::spanned::Spanned;

use crate::ast::{JobFn, ParamKind};
use crate::valid::{CatchUp, Checked, Limits};
use types::{in_module, module_needs_glob, needs_arg_check, ok_type};

/// The visibility of items inside the generated module, chosen so that they are
/// reachable from exactly where the job function is.
fn inner_visibility(vis: &Visibility) -> TokenStream {
    match vis {
        Visibility::Public(_) => quote!(pub),
        Visibility::Inherited => quote!(pub(super)),
        Visibility::Restricted(r) => {
            let path = &r.path;
            if path.is_ident("crate") || path.segments.first().is_some_and(|s| s.ident == "crate") {
                quote!(#vis)
            } else if path.is_ident("self") {
                quote!(pub(super))
            } else if path.is_ident("super") {
                quote!(pub(in super::super))
            } else {
                quote!(pub(crate))
            }
        }
    }
}

fn duration(d: std::time::Duration) -> TokenStream {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    quote!(::core::option::Option::Some(::core::time::Duration::new(#secs, #nanos)))
}

fn opt_str(v: &Option<String>) -> TokenStream {
    match v {
        Some(s) => quote!(::core::option::Option::Some(#s)),
        None => quote!(::jobq::__private::NO_STR),
    }
}

/// The job's `JobLimits`; `None` when it has none (as `DEFAULT_DEF`).
fn limits(l: &Limits) -> Option<TokenStream> {
    if l.concurrency.is_none() && l.rate.is_none() {
        return None;
    }
    let concurrency = match l.concurrency {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let rate = match l.rate {
        Some((count, secs)) => quote!(::core::option::Option::Some(::jobq::Rate::new(
            #count,
            ::core::time::Duration::from_secs(#secs)
        ))),
        None => quote!(::core::option::Option::None),
    };
    let partition = opt_str(&l.partition);
    Some(quote!(::jobq::JobLimits {
        concurrency: #concurrency,
        rate: #rate,
        partition: #partition,
    }))
}

/// A job's settings as `job_items!` takes them. What the job leaves at
/// jobq's default costs it nothing to check: its constant is a re-export of
/// jobq's (`jobq::__private::default`), and its `JobDef` field comes from
/// `jobq::__private::DEFAULT_DEF`.
#[derive(Default)]
struct SettingTokens {
    /// `NAME = value`, for each setting's constant the job sets.
    consts: Vec<TokenStream>,
    /// The names of the other constants.
    defaults: Vec<syn::Ident>,
    /// `field: value,`, for each field of its `JobDef` that is not the default.
    def: Vec<TokenStream>,
}

impl SettingTokens {
    fn constant(&mut self, name: &str, value: Option<&TokenStream>) {
        let name = format_ident!("{name}");
        match value {
            Some(value) => self.consts.push(quote!(#name = #value)),
            None => self.defaults.push(name),
        }
    }

    fn field(&mut self, name: &str, value: Option<TokenStream>) {
        if let Some(value) = value {
            let name = format_ident!("{name}");
            self.def.push(quote!(#name: #value,));
        }
    }
}

/// The settings' constants and `JobDef` fields of the job; `requirements`
/// are its injected parameters' `Inject::requirement`s.
fn setting_tokens(c: &Checked, requirements: &[TokenStream]) -> SettingTokens {
    let s = &c.settings;
    let queue = &s.queue;
    let queue = (queue != jobq_rules::DEFAULT_QUEUE).then(|| quote!(#queue));
    let (retries, max_attempts) = (s.retries, s.retries as i32 + 1);
    let (retries, max_attempts) = if retries == jobq_rules::DEFAULT_RETRIES {
        (None, None)
    } else {
        (Some(quote!(#retries)), Some(quote!(#max_attempts)))
    };
    let priority = s.priority;
    let priority = (priority != jobq_rules::DEFAULT_PRIORITY).then(|| quote!(#priority));
    let cron = (c.schedule.cron.as_ref()).map(|e| quote!(::core::option::Option::Some(#e)));
    let timeout = s.timeout.map(duration);

    let mut t = SettingTokens::default();
    t.constant("QUEUE", queue.as_ref());
    t.constant("RETRIES", retries.as_ref());
    t.constant("MAX_ATTEMPTS", max_attempts.as_ref());
    t.constant("PRIORITY", priority.as_ref());
    t.constant("CRON", cron.as_ref());
    t.constant("TIMEOUT", timeout.as_ref());

    let aliases = &s.aliases;
    t.field(
        "aliases",
        (!aliases.is_empty()).then(|| quote!(&[#(#aliases),*])),
    );
    t.field("queue", queue);
    t.field("max_attempts", max_attempts);
    t.field("priority", priority);
    t.field("timeout", timeout);
    t.field("cron", cron);
    let tz = c.schedule.tz.as_ref();
    t.field("tz", tz.map(|tz| quote!(::core::option::Option::Some(#tz))));
    let catch_up = match c.schedule.catch_up {
        CatchUp::Latest => None,
        CatchUp::None => Some(quote!(::jobq::CatchUp::None)),
        CatchUp::All => Some(quote!(::jobq::CatchUp::All)),
    };
    t.field("catch_up", catch_up);
    t.field("unique_by_args", s.unique_by_args.then(|| quote!(true)));
    t.field("unique_for", s.unique_for.map(duration));
    t.field("limits", limits(&c.limits));
    t.field(
        "requires",
        (!requirements.is_empty()).then(|| quote!(&[#(#requirements),*])),
    );
    t
}

/// `Args`'s `Debug` and `Clone`, bounded on `bounds`, for the fields
/// (with their types' spans) in order. Only for a job whose arguments get
/// the `JobArg` check (the others derive them): in a proc macro, even
/// tokens never emitted cost each job compile time.
fn debug_and_clone(bounds: &[TokenStream], fields: &[(&syn::Ident, Span)]) -> TokenStream {
    // Spanned on the type: a `#[serde(with)]` argument's type without
    // `Debug` or `Clone` is reported there.
    let debug_fields = fields.iter().map(|(field, span)| {
        let name = field.to_string();
        quote_spanned!(*span=> .field(#name, &self.#field))
    });
    let clone_fields = fields.iter().map(
        |(field, span)| quote_spanned!(*span=> #field: ::core::clone::Clone::clone(&self.#field)),
    );
    quote! {
        impl ::core::fmt::Debug for Args where #(#bounds),* {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct("Args") #(#debug_fields)* .finish()
            }
        }

        impl ::core::clone::Clone for Args where #(#bounds),* {
            fn clone(&self) -> Self {
                Args { #(#clone_fields),* }
            }
        }
    }
}

/// Emits the function, unchanged, plus the job module and its registration.
pub fn expand(f: &JobFn, c: &Checked) -> TokenStream {
    let item = &f.item;
    let vis = &item.vis;
    let ivis = inner_visibility(vis);
    let ident = &item.sig.ident;
    let fn_name = ident.to_string();

    let name = &c.settings.name;

    // Args fields, in parameter order. Each type that serde handles itself
    // gets an assertion, spanned on the type, whose error says what it
    // needs (`JobArg`: serde's traits, `Debug` and `Clone`); `Args`'s impls
    // of these are bounded on the same trait (`for<'__jobq>` keeps the bound
    // from being checked where it is written), so that they add no errors
    // of their own.
    let mut fields = Vec::new();
    let mut assertions = Vec::new();
    let mut bounds = Vec::new();
    let mut field_spans = Vec::new();
    for p in f.args() {
        let ParamKind::Arg { ident, serde_attrs } = &p.kind else {
            unreachable!("args() yields only Arg parameters")
        };
        let field = ident.as_ref().expect("validated: plain identifier");
        let ty = in_module(&p.ty);
        // Short, without a link: serde's derives parse every doc string.
        let doc = format!("The `{field}` argument.");
        if needs_arg_check(&p.ty, serde_attrs) {
            assertions.push(quote_spanned! {p.ty.span()=>
                ::jobq::__private::assert_arg::<#ty>();
            });
            bounds.push(quote!(for<'__jobq> #ty: ::jobq::__private::JobArg));
        }
        field_spans.push((field, p.ty.span()));
        fields.push(quote! {
            #[doc = #doc]
            #(#serde_attrs)*
            #ivis #field: #ty,
        });
    }
    // Where `Args` falls short of `jobq::Job`'s bounds, that error is
    // reported here: on the argument's type when there is one argument, else
    // on the function's name (each argument's own error is on its type).
    let mut args = f.args();
    let args_span = match (args.next(), args.next()) {
        (Some(only), None) => only.ty.span(),
        _ => ident.span(),
    };
    let args_ty = quote_spanned!(args_span=> Args);
    // `Debug` and `Clone` are derived, unless an argument gets the check:
    // then written out with the bounds serde's impls get, as a derive
    // cannot be bounded.
    let (serde_bound, args_derives, args_impls) = if bounds.is_empty() {
        (quote!(), quote!(Debug, Clone), quote!())
    } else {
        let text = bounds
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        (
            quote!(#[serde(bound(serialize = #text, deserialize = #text))]),
            quote!(),
            debug_and_clone(&bounds, &field_spans),
        )
    };

    // Locals for injected values, and the call's argument list in order.
    let mut injections = Vec::new();
    let mut requirements = Vec::new();
    let mut call_args = Vec::new();
    for (i, p) in f.params.iter().enumerate() {
        match &p.kind {
            ParamKind::Injected(_) => {
                let local = format_ident!("__jobq_p{}", i);
                let ty = in_module(&p.ty);
                injections.push(quote! {
                    let #local = <#ty as ::jobq::__private::Inject>::inject(&__jobq_cx)?;
                });
                requirements.push(quote!(<#ty as ::jobq::__private::Inject>::requirement));
                call_args.push(quote!(#local));
            }
            ParamKind::Arg { ident, .. } => {
                let field = ident.as_ref().expect("validated: plain identifier");
                call_args.push(quote!(__jobq_args.#field));
            }
        }
    }
    // One generic helper in jobq awaits the handler and reads its result, so
    // no job adds an `async` block of its own to type-check. Spanned on the
    // return type, so a type that is not a usable `Result` is reported there.
    let outcome = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => quote_spanned! {ty.span()=>
            ::jobq::__private::IntoOutcome::into_outcome
        },
        syn::ReturnType::Default => quote!(::jobq::__private::IntoOutcome::into_outcome),
    };
    // What the job returns: the `T` of `Result<T, E>` as written (its
    // tokens keep their spans, so a `T` that is not serde is reported on
    // it), else (an alias without arguments) what the type system finds.
    let output = match &item.sig.output {
        syn::ReturnType::Type(_, ty) => match ok_type(ty) {
            Some(t) => {
                let t = in_module(t);
                quote!(#t)
            }
            None => {
                let ty = in_module(ty);
                quote_spanned!(ty.span()=> <#ty as ::jobq::__private::IntoOutcome>::Ok)
            }
        },
        syn::ReturnType::Default => quote!(()),
    };
    let SettingTokens {
        consts,
        defaults,
        def,
    } = setting_tokens(c, &requirements);
    let arg_count = f.args().count();
    let args_binding = if arg_count == 0 {
        quote!(let _ = __jobq_args;)
    } else {
        quote!()
    };

    let glob = if module_needs_glob(f) {
        quote!(
            use super::*;
        )
    } else {
        quote!()
    };

    // Links only to the function: rustdoc lists the module's items below
    // it, and each link costs `cargo check` a resolution.
    let mod_doc = format!(
        "The job `{name}` generated by `#[job]` on [`{fn_name}`](fn@super::{fn_name}): its \
         `Args`, `enqueue`, `enqueue_many`, `builder`, `result` and `wait`."
    );

    // Everything but the user's function, the module and its imports is
    // written by `jobq::__private::job_items!` (jobq/src/__private/items.rs)
    // from what is given here: rustc expands a `macro_rules!` far cheaper
    // than it takes in the same tokens from a proc macro.
    quote! {
        #item

        #[doc = #mod_doc]
        #vis mod #ident {
            #![allow(unused_imports, dead_code, clippy::all)]
            #glob

            ::jobq::__private::job_items! {
                vis: #ivis,
                name: #name,
                consts: [#(#consts),*],
                defaults: [#(#defaults),*],
                def: { #(#def)* },
                args: #args_ty,
                output: #output,
                args_attrs: [#serde_bound],
                args_derives: [#args_derives],
                args_impls: { #args_impls },
                fields: { #(#fields)* },
                run: (__jobq_cx, __jobq_args) {
                    #(#assertions)*
                    #args_binding
                    #(#injections)*
                },
                call: super::#ident(#(#call_args),*),
                outcome: #outcome,
            }
        }
    }
}

/// On error: the user's function as written (so the rest of their crate still
/// type-checks and rust-analyzer keeps working) next to the errors.
pub fn fallback(
    item: Option<&crate::ast::JobItem>,
    raw: TokenStream,
    errors: Vec<syn::Error>,
) -> TokenStream {
    let mut iter = errors.into_iter();
    let mut combined = iter.next().expect("fallback needs at least one error");
    for e in iter {
        combined.combine(e);
    }
    let errors = combined.to_compile_error();
    match item {
        Some(item) => quote!(#item #errors),
        None => quote!(#raw #errors),
    }
}
