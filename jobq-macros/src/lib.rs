//! The `#[job]` attribute of [jobq](https://docs.rs/jobq). Use it through
//! `jobq::job`; its documentation lives there.
//!
//! The macro works in three stages, one file each: `attr.rs` and `ast.rs` read
//! the attribute and the function, `valid.rs` judges them (collecting every
//! error), `expand.rs` writes the code. This file only wires them.

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;
use syn::parse::Parser;

/// Turns an `async fn` into a jobq job. See `jobq::job` for the full
/// documentation.
#[proc_macro_attribute]
pub fn job(args: TokenStream, input: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    let raw = proc_macro2::TokenStream::from(input.clone());

    let item: ast::JobItem = match syn::parse(input) {
        Ok(item) => item,
        Err(e) => {
            let e = syn::Error::new(e.span(), format!("`#[job]` goes on an `async fn`: {e}"));
            return expand::fallback(None, raw, vec![e]).into();
        }
    };
    let f = ast::JobFn::from_item(item);

    let attr =
        (|input: syn::parse::ParseStream| attr::JobAttr::parse(input, &mut errors)).parse(args);
    let attr = match attr {
        Ok(attr) => attr,
        Err(e) => {
            errors.push(e);
            attr::JobAttr::default()
        }
    };

    match valid::check(&attr, &f, &mut errors) {
        Some(checked) if errors.is_empty() => expand::expand(&f, &checked).into(),
        _ => expand::fallback(Some(&f.item), raw, errors).into(),
    }
}
