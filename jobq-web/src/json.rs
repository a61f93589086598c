//! JSON as PostgreSQL stores it, shown without losing a digit.
//!
//! Arguments come from the database as text. Parsing them into numbers would
//! round integers beyond 64 bits (and JavaScript rounds those beyond 2^53),
//! so the text is re-laid token by token: numbers keep their digits, and an
//! integer JavaScript would round is marked on the page and written as a
//! string in the JSON API.

/// One piece of pretty-printed JSON, for the template to wrap in a span.
#[derive(Debug, PartialEq)]
pub(crate) struct Piece {
    pub kind: &'static str,
    pub text: String,
}

/// The largest integer JavaScript's numbers hold exactly: 2^53 - 1.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Open(char),
    Close(char),
    Colon,
    Comma,
    Str(&'a str),
    Num(&'a str),
    Lit(&'a str),
}

/// Splits JSON text into tokens; `None` when it is not JSON.
fn tokens(text: &str) -> Option<Vec<Token<'_>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        match bytes[i] {
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            b'{' | b'[' => {
                out.push(Token::Open(bytes[i] as char));
                i += 1;
            }
            b'}' | b']' => {
                out.push(Token::Close(bytes[i] as char));
                i += 1;
            }
            b':' => {
                out.push(Token::Colon);
                i += 1;
            }
            b',' => {
                out.push(Token::Comma);
                i += 1;
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
                out.push(Token::Str(text.get(start..i)?));
            }
            b'-' | b'0'..=b'9' => {
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push(Token::Num(&text[start..i]));
            }
            b't' | b'f' | b'n' => {
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word = &text[start..i];
                if !matches!(word, "true" | "false" | "null") {
                    return None;
                }
                out.push(Token::Lit(word));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Whether a number token is an integer JavaScript cannot hold exactly.
fn beyond_javascript(number: &str) -> bool {
    if number.contains(['.', 'e', 'E']) {
        return false;
    }
    let digits = number.trim_start_matches('-');
    digits.parse::<u64>().map_or(true, |n| n > MAX_SAFE_INTEGER)
}

/// Lays JSON text out over lines, two spaces per level, keeping every token
/// as written. Text that is not JSON comes back as one plain piece.
pub(crate) fn pretty(text: &str) -> Vec<Piece> {
    let Some(tokens) = tokens(text) else {
        return vec![Piece {
            kind: "plain",
            text: text.to_owned(),
        }];
    };
    let mut pieces = Vec::new();
    let mut push = |kind: &'static str, text: String| match pieces.last_mut() {
        Some(Piece {
            kind: last,
            text: so_far,
        }) if *last == kind && kind == "punct" => so_far.push_str(&text),
        _ => pieces.push(Piece { kind, text }),
    };
    let mut depth = 0usize;
    let newline = |depth: usize| format!("\n{}", "  ".repeat(depth));
    let mut iter = tokens.iter().peekable();
    while let Some(token) = iter.next() {
        let is_key = matches!(token, Token::Str(_)) && iter.peek() == Some(&&Token::Colon);
        match token {
            Token::Open(c) => {
                if matches!(iter.peek(), Some(Token::Close(_))) {
                    let close = if *c == '{' { '}' } else { ']' };
                    iter.next();
                    push("punct", format!("{c}{close}"));
                } else {
                    depth += 1;
                    push("punct", format!("{c}{}", newline(depth)));
                }
            }
            Token::Close(c) => {
                depth = depth.saturating_sub(1);
                push("punct", format!("{}{c}", newline(depth)));
            }
            Token::Colon => push("punct", ": ".to_owned()),
            Token::Comma => push("punct", format!(",{}", newline(depth))),
            Token::Str(s) => push(if is_key { "key" } else { "string" }, (*s).to_owned()),
            Token::Num(n) if beyond_javascript(n) => push("bignum", (*n).to_owned()),
            Token::Num(n) => push("number", (*n).to_owned()),
            Token::Lit(l) => push("literal", (*l).to_owned()),
        }
    }
    pieces
}

/// The JSON text with every integer JavaScript would round written as a
/// string (`12345678901234567890` becomes `"12345678901234567890"`), so a
/// browser or Node client reads the digits that were stored. Everything
/// else is kept as written. Text that is not JSON comes back unchanged.
pub(crate) fn javascript_safe(text: &str) -> String {
    let Some(tokens) = tokens(text) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + 16);
    for token in tokens {
        match token {
            Token::Open(c) | Token::Close(c) => out.push(c),
            Token::Colon => out.push(':'),
            Token::Comma => out.push(','),
            Token::Num(n) if beyond_javascript(n) => {
                out.push('"');
                out.push_str(n);
                out.push('"');
            }
            Token::Str(s) | Token::Num(s) | Token::Lit(s) => out.push_str(s),
        }
    }
    out
}

/// `value` with the ids it holds (`id`, `attempted_by`, `worker`, at any
/// depth outside `args` and `metadata`) written as strings, as the JSON API
/// gives every id.
pub(crate) fn ids_as_strings(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("id" | "attempted_by" | "worker", Value::Number(n)) => {
                            Value::String(n.to_string())
                        }
                        ("args" | "metadata", v) => v,
                        (_, v) => ids_as_strings(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(ids_as_strings).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(text: &str) -> String {
        pretty(text).into_iter().map(|p| p.text).collect()
    }

    #[test]
    fn pretty_lays_out_nested_values_and_keeps_every_digit() {
        let text = r#"{"a": [1, 2.50, 123456789012345678901234567890], "b": {}, "c": {"d": null}}"#;
        assert_eq!(
            joined(text),
            "{\n  \"a\": [\n    1,\n    2.50,\n    123456789012345678901234567890\n  ],\n  \"b\": {},\n  \"c\": {\n    \"d\": null\n  }\n}"
        );
    }

    #[test]
    fn pretty_marks_keys_strings_and_integers_javascript_would_round() {
        let pieces = pretty(r#"{"id": 9007199254740993, "n": 9007199254740991, "s": "x\"}"}"#);
        let kinds: Vec<_> = pieces.iter().map(|p| (p.kind, p.text.as_str())).collect();
        assert!(kinds.contains(&("key", "\"id\"")));
        assert!(kinds.contains(&("bignum", "9007199254740993")));
        assert!(kinds.contains(&("number", "9007199254740991")));
        assert!(kinds.contains(&("string", "\"x\\\"}\"")));
    }

    #[test]
    fn text_that_is_not_json_is_kept_as_one_plain_piece() {
        assert_eq!(
            pretty("<script>"),
            vec![Piece {
                kind: "plain",
                text: "<script>".into()
            }]
        );
        assert_eq!(javascript_safe("{\"a\": tru"), "{\"a\": tru");
    }

    #[test]
    fn ids_become_strings_everywhere_but_in_arguments() {
        let v = serde_json::json!({
            "id": 9007199254740993_i64, "attempted_by": 7, "attempt": 2,
            "attempts": [{"worker": 3, "attempt": 1}],
            "args": {"id": 5}, "last_run": {"id": 8}, "gone": null
        });
        assert_eq!(
            ids_as_strings(v),
            serde_json::json!({
                "id": "9007199254740993", "attempted_by": "7", "attempt": 2,
                "attempts": [{"worker": "3", "attempt": 1}],
                "args": {"id": 5}, "last_run": {"id": "8"}, "gone": null
            })
        );
    }

    #[test]
    fn javascript_safe_quotes_only_integers_beyond_two_to_the_53() {
        assert_eq!(
            javascript_safe(r#"{"big": -9007199254740993, "ok": 9007199254740991, "f": 1e400}"#),
            r#"{"big":"-9007199254740993","ok":9007199254740991,"f":1e400}"#
        );
        let safe: serde_json::Value =
            serde_json::from_str(&javascript_safe(r#"[18446744073709551616]"#)).unwrap();
        assert_eq!(safe, serde_json::json!(["18446744073709551616"]));
    }
}
