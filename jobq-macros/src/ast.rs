//! Stage 1b: the annotated `async fn`, read into injected parameters and
//! argument parameters. Nothing here judges the function; `valid.rs` does.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, FnArg, Ident, Pat, Signature, Type, Visibility};

/// A function item, its body kept as the tokens written: only the
/// signature concerns `#[job]`, and parsing the body into syntax to print
/// it back token by token would cost every job compile time in proportion
/// to its length. rustc parses the body, and reports its errors, as for
/// any function.
pub struct JobItem {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    /// The `{ ... }` group, as written.
    pub body: TokenTree,
}

impl Parse for JobItem {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body: TokenTree = input.parse()?;
        if !matches!(&body, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace) {
            return Err(syn::Error::new(
                body.span(),
                "expected the function's body `{ ... }`",
            ));
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function's body"));
        }
        Ok(JobItem {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl ToTokens for JobItem {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.body.to_tokens(tokens);
    }
}

/// What the worker injects into a parameter.
#[derive(PartialEq, Eq)]
pub enum Injected {
    /// `jobq::JobContext`.
    Context,
    /// `jobq::State<T>`, with `T` as written (its tokens, printed): two
    /// parameters with equal strings inject the same value.
    State(String),
}

/// How a parameter gets its value when the job runs.
pub enum ParamKind {
    /// Provided by the worker: `jobq::State<T>` or `jobq::JobContext`.
    Injected(Injected),
    /// Deserialized from the stored args; becomes a field of `Args`.
    Arg {
        /// The field name (the parameter's identifier), when the pattern is a
        /// plain identifier. `None` is reported by validation.
        ident: Option<Ident>,
        /// `#[serde(...)]` attributes, carried over to the field.
        serde_attrs: Vec<Attribute>,
    },
}

/// One parameter of the job function.
pub struct Param {
    pub pat: Pat,
    pub ty: Type,
    pub kind: ParamKind,
}

/// A receiver (`self`) found among the parameters.
pub struct Receiver {
    pub span: proc_macro2::Span,
}

/// The job function as the macro sees it.
pub struct JobFn {
    /// The function as it will be emitted: unchanged but for `#[serde]`
    /// attributes removed from its parameters (they belong to `Args`).
    pub item: JobItem,
    pub params: Vec<Param>,
    pub receiver: Option<Receiver>,
}

/// What the worker injects into a parameter of this type, if anything. The
/// macro cannot resolve paths, so it goes by the last segment: `State<..>` or
/// `JobContext`.
pub fn injected(ty: &Type) -> Option<Injected> {
    let Type::Path(path) = ty else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    match path.path.segments.last() {
        Some(seg) if seg.ident == "JobContext" && seg.arguments.is_none() => {
            Some(Injected::Context)
        }
        Some(seg) if seg.ident == "State" => match &seg.arguments {
            syn::PathArguments::AngleBracketed(args) => {
                Some(Injected::State(args.args.to_token_stream().to_string()))
            }
            _ => None,
        },
        _ => None,
    }
}

impl JobFn {
    /// Splits the function's parameters and strips `#[serde]` from them.
    pub fn from_item(mut item: JobItem) -> Self {
        let mut params = Vec::new();
        let mut receiver = None;
        for input in item.sig.inputs.iter_mut() {
            match input {
                FnArg::Receiver(r) => {
                    receiver = Some(Receiver {
                        span: r.self_token.span,
                    });
                }
                FnArg::Typed(pt) => {
                    let (serde_attrs, other): (Vec<_>, Vec<_>) =
                        pt.attrs.drain(..).partition(|a| a.path().is_ident("serde"));
                    pt.attrs = other;
                    let kind = if let Some(what) = injected(&pt.ty) {
                        ParamKind::Injected(what)
                    } else {
                        let ident = match &*pt.pat {
                            Pat::Ident(pi) if pi.subpat.is_none() && pi.by_ref.is_none() => {
                                Some(pi.ident.clone())
                            }
                            _ => None,
                        };
                        ParamKind::Arg { ident, serde_attrs }
                    };
                    params.push(Param {
                        pat: (*pt.pat).clone(),
                        ty: (*pt.ty).clone(),
                        kind,
                    });
                }
            }
        }
        JobFn {
            item,
            params,
            receiver,
        }
    }

    /// The parameters that become fields of `Args`.
    pub fn args(&self) -> impl Iterator<Item = &Param> {
        self.params
            .iter()
            .filter(|p| matches!(p.kind, ParamKind::Arg { .. }))
    }
}
