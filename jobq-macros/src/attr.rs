//! Stage 1a: the keys inside `#[job(...)]`, read into a checked view.
//!
//! Every key goes through [`set_once`], so a key given twice is reported on its
//! second occurrence. Unknown keys fail in `lookahead1`, which lists every key
//! that would have been accepted.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{LitInt, LitStr, Token, bracketed};

mod kw {
    syn::custom_keyword!(queue);
    syn::custom_keyword!(retries);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(priority);
    syn::custom_keyword!(name);
    syn::custom_keyword!(aliases);
    syn::custom_keyword!(cron);
    syn::custom_keyword!(tz);
    syn::custom_keyword!(catch_up);
    syn::custom_keyword!(unique);
    syn::custom_keyword!(unique_for);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(rate);
    syn::custom_keyword!(partition);
}

/// A signed integer literal as written. Errors about it go through
/// `syn::Error::new_spanned`, which covers the `-` too (`Span::join` does not
/// work on a stable compiler).
pub struct SignedInt {
    pub minus: Option<Token![-]>,
    pub lit: LitInt,
    pub negative: bool,
}

impl Parse for SignedInt {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let minus: Option<Token![-]> = input.parse()?;
        let lit: LitInt = input.parse()?;
        Ok(SignedInt {
            negative: minus.is_some(),
            minus,
            lit,
        })
    }
}

impl quote::ToTokens for SignedInt {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        self.minus.to_tokens(tokens);
        self.lit.to_tokens(tokens);
    }
}

/// The list of `aliases = ["a", "b"]`.
pub struct Aliases {
    pub names: Vec<LitStr>,
}

impl Parse for Aliases {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let content;
        bracketed!(content in input);
        let names = content
            .parse_terminated(<LitStr as Parse>::parse, Token![,])?
            .into_iter()
            .collect();
        Ok(Aliases { names })
    }
}

/// Everything `#[job(...)]` may say. `None` means "not given".
#[derive(Default)]
pub struct JobAttr {
    pub queue: Option<LitStr>,
    pub retries: Option<LitInt>,
    pub timeout: Option<LitStr>,
    pub priority: Option<SignedInt>,
    pub name: Option<LitStr>,
    pub aliases: Option<Aliases>,
    pub cron: Option<LitStr>,
    pub tz: Option<LitStr>,
    pub catch_up: Option<LitStr>,
    pub unique: Option<LitStr>,
    pub unique_for: Option<LitStr>,
    pub concurrency: Option<LitInt>,
    pub rate: Option<LitStr>,
    pub partition: Option<LitStr>,
}

/// Stores `value` in `slot`, or reports the key as given twice on `key_span`.
fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    key: &str,
    key_span: Span,
    errors: &mut Vec<syn::Error>,
) {
    if slot.is_some() {
        errors.push(syn::Error::new(
            key_span,
            format!("`{key}` given twice; keep one of them"),
        ));
    } else {
        *slot = Some(value);
    }
}

/// Parses the `=` after a key; without one, the error names the key and sits on it
/// (a missing `=` at the very end would otherwise be spanned on the whole attribute).
fn expect_eq(input: ParseStream, key: &str, key_span: Span) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(())
    } else {
        Err(syn::Error::new(
            key_span,
            format!("expected `=` and a value after `{key}`"),
        ))
    }
}

/// Reads `key = value` for the keyword `K` and stores the value once.
fn read<K: Parse + Spanned, V: Parse>(
    input: ParseStream,
    key: &str,
    slot: &mut Option<V>,
    errors: &mut Vec<syn::Error>,
) -> syn::Result<()> {
    let span = input.parse::<K>()?.span();
    expect_eq(input, key, span)?;
    set_once(slot, input.parse()?, key, span, errors);
    Ok(())
}

impl JobAttr {
    /// Parses the attribute's arguments. Syntax errors stop the parse (there is
    /// nothing sensible to read after them); duplicated keys are collected.
    pub fn parse(input: ParseStream, errors: &mut Vec<syn::Error>) -> syn::Result<Self> {
        let mut attr = JobAttr::default();
        while !input.is_empty() {
            let look = input.lookahead1();
            if look.peek(kw::queue) {
                read::<kw::queue, _>(input, "queue", &mut attr.queue, errors)?;
            } else if look.peek(kw::retries) {
                read::<kw::retries, _>(input, "retries", &mut attr.retries, errors)?;
            } else if look.peek(kw::timeout) {
                read::<kw::timeout, _>(input, "timeout", &mut attr.timeout, errors)?;
            } else if look.peek(kw::priority) {
                read::<kw::priority, _>(input, "priority", &mut attr.priority, errors)?;
            } else if look.peek(kw::name) {
                read::<kw::name, _>(input, "name", &mut attr.name, errors)?;
            } else if look.peek(kw::aliases) {
                read::<kw::aliases, _>(input, "aliases", &mut attr.aliases, errors)?;
            } else if look.peek(kw::cron) {
                read::<kw::cron, _>(input, "cron", &mut attr.cron, errors)?;
            } else if look.peek(kw::tz) {
                read::<kw::tz, _>(input, "tz", &mut attr.tz, errors)?;
            } else if look.peek(kw::catch_up) {
                read::<kw::catch_up, _>(input, "catch_up", &mut attr.catch_up, errors)?;
            } else if look.peek(kw::unique) {
                read::<kw::unique, _>(input, "unique", &mut attr.unique, errors)?;
            } else if look.peek(kw::unique_for) {
                read::<kw::unique_for, _>(input, "unique_for", &mut attr.unique_for, errors)?;
            } else if look.peek(kw::concurrency) {
                read::<kw::concurrency, _>(input, "concurrency", &mut attr.concurrency, errors)?;
            } else if look.peek(kw::rate) {
                read::<kw::rate, _>(input, "rate", &mut attr.rate, errors)?;
            } else if look.peek(kw::partition) {
                read::<kw::partition, _>(input, "partition", &mut attr.partition, errors)?;
            } else if input.peek(syn::Ident::peek_any) {
                // Name the unknown key, then list the known ones.
                let key = input.call(syn::Ident::parse_any)?;
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown key `{key}`; {}", look.error()),
                ));
            } else {
                return Err(look.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(attr)
    }
}
