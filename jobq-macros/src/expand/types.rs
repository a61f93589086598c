//! Parameter types as the generated module writes them, and which of them
//! need the argument check.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::visit_mut::VisitMut;
use syn::{Attribute, GenericArgument, PathArguments, Type};

use crate::ast::{JobFn, ParamKind};

/// The names the generated module defines. A parameter type's path starting
/// with one of them means the user's item of that name, not the module's.
const MODULE_ITEMS: &[&str] = &[
    "Args",
    "Job",
    "NAME",
    "QUEUE",
    "RETRIES",
    "MAX_ATTEMPTS",
    "PRIORITY",
    "CRON",
    "TIMEOUT",
    "enqueue",
    "enqueue_many",
    "builder",
    "result",
    "wait",
];

/// Rewrites a type written at the function so that it means the same inside
/// the generated module, one level down: `self::T` becomes `super::T`,
/// `super::T` becomes `super::super::T`, and a path starting with a name the
/// module defines (`Args`, `Job`, ..) gets `super::` in front. Everything else
/// (`crate::..`, `::..`, the prelude, primitives, and the user's names, which
/// the module's `use super::*` brings in) already means the same.
struct IntoModule;

impl VisitMut for IntoModule {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        if path.leading_colon.is_none()
            && let Some(first) = path.segments.first_mut()
        {
            let span = first.ident.span();
            if first.ident == "self" {
                first.ident = syn::Ident::new("super", span);
            } else if first.ident == "super" || MODULE_ITEMS.iter().any(|item| first.ident == item)
            {
                path.segments
                    .insert(0, syn::Ident::new("super", span).into());
            }
        }
        syn::visit_mut::visit_path_mut(self, path);
    }
}

/// `ty` as the generated module must write it; see [`IntoModule`].
pub fn in_module(ty: &Type) -> Type {
    let mut ty = ty.clone();
    IntoModule.visit_type_mut(&mut ty);
    ty
}

/// Whether a parameter's `#[serde(..)]` attributes say how to (de)serialize
/// it (`with`, `serialize_with`, `deserialize_with`, `bound`): its type then
/// need not implement serde's traits itself.
fn serde_handles_type(attrs: &[Attribute]) -> bool {
    fn mentions(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            proc_macro2::TokenTree::Ident(i) => {
                i == "with" || i == "serialize_with" || i == "deserialize_with" || i == "bound"
            }
            proc_macro2::TokenTree::Group(g) => mentions(g.stream()),
            _ => false,
        })
    }
    attrs.iter().any(|a| mentions(a.meta.to_token_stream()))
}

/// Whether an argument of type `ty` gets the check that its type is
/// `jobq::__private::JobArg` (with the bound that keeps serde's derives
/// from adding errors of their own). Not when its `#[serde(..)]` says how to
/// (de)serialize it, nor when the type is one serde supports for certain:
/// the check costs compile time, and these cannot fail it. (Were such a
/// name shadowed by a type of the user's without serde, the build still
/// fails, only with serde's own errors.)
pub fn needs_arg_check(ty: &Type, serde_attrs: &[Attribute]) -> bool {
    !serde_handles_type(serde_attrs) && !known_serde(ty)
}

/// Whether the generated module needs `use super::*` to see what the
/// function's parameters name. Not when every parameter is an argument of a
/// [`known_serde`] type (primitives and prelude types only) without
/// `#[serde(..)]` (whose paths may name the user's functions): the glob import
/// costs compile time in a module with many jobs. A shadowed prelude name
/// cannot slip through: the call `super::job(args.field, ..)` checks each
/// field against the parameter's type.
pub fn module_needs_glob(f: &JobFn) -> bool {
    let output_known = match &f.item.sig.output {
        syn::ReturnType::Type(_, ty) => ok_type(ty).is_some_and(known_serde),
        syn::ReturnType::Default => true,
    };
    !output_known
        || f.params.iter().any(|p| match &p.kind {
            ParamKind::Arg { serde_attrs, .. } => !serde_attrs.is_empty() || !known_serde(&p.ty),
            ParamKind::Injected(_) => true,
        })
}

/// The `T` of a return type written `Result<T, ..>`, `anyhow::Result<T>`,
/// `AppResult<T>`: the first type argument of a path whose last segment
/// ends in `Result` (the names `valid.rs` accepts). `None` for an alias
/// without arguments (`JobResult`), whose `T` the type system finds instead.
pub fn ok_type(ty: &Type) -> Option<&Type> {
    let last = crate::valid::result_segment(ty)?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// Primitives and `String`, by the names the prelude gives them.
const KNOWN: &[&str] = &[
    "bool", "char", "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128",
    "usize", "f32", "f64", "String",
];

/// Prelude containers serde supports when their element type is supported.
const KNOWN_CONTAINERS: &[&str] = &["Vec", "Option", "Box"];

/// `ty` is built only from [`KNOWN`] types, [`KNOWN_CONTAINERS`] and tuples.
fn known_serde(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.iter().all(known_serde),
        Type::Paren(p) => known_serde(&p.elem),
        Type::Group(g) => known_serde(&g.elem),
        Type::Path(p) if p.qself.is_none() && p.path.leading_colon.is_none() => {
            let [seg] = p.path.segments.iter().collect::<Vec<_>>()[..] else {
                return false;
            };
            match &seg.arguments {
                PathArguments::None => KNOWN.iter().any(|k| seg.ident == k),
                PathArguments::AngleBracketed(a) if a.args.len() == 1 => {
                    KNOWN_CONTAINERS.iter().any(|k| seg.ident == k)
                        && matches!(&a.args[0], GenericArgument::Type(t) if known_serde(t))
                }
                _ => false,
            }
        }
        _ => false,
    }
}
