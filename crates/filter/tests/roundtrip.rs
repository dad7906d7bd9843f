//! Property tests: printing and re-parsing is the identity on trees, and
//! parsing is stable under re-printing.

mod common;

use common::*;
use flotilla_filter::{CompareOp, Expr, Filter, Literal, Source, parse};
use proptest::prelude::*;

/// A deterministic source of formatting choices for the noisy printer.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[(self.next() % options.len() as u64) as usize]
    }

    fn ws(&mut self) -> &'static str {
        self.pick(&[" ", " ", "  ", "\t", "\n ", " \r\n"])
    }

    /// Optional whitespace (where the grammar does not need any).
    fn opt_ws(&mut self) -> &'static str {
        self.pick(&["", "", " ", "\t"])
    }

    fn case(&mut self, word: &str) -> String {
        word.chars()
            .map(|c| {
                if self.chance(2) {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect()
    }
}

/// Prints a filter the way a human might: random keyword case, spacing,
/// quote style, escapes, number notation and redundant parentheses.
fn noisy(f: &Filter, noise: &mut Noise) -> String {
    let mut out = format!(
        "{}{}{}*{}{}{}",
        noise.opt_ws(),
        noise.case("select"),
        noise.ws(),
        noise.ws(),
        noise.case("from"),
        noise.ws()
    );
    match &f.source {
        Source::Devices => out.push_str(&noise.case("devices")),
        Source::Template(t) => out.push_str(t),
    }
    if let Some(c) = &f.condition {
        out.push_str(noise.ws());
        out.push_str(&noise.case("where"));
        out.push_str(noise.ws());
        noisy_expr(c, 0, noise, &mut out);
    }
    out.push_str(noise.opt_ws());
    out
}

fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        Expr::Not(_) => 3,
        _ => 4,
    }
}

fn noisy_expr(e: &Expr, min: u8, noise: &mut Noise, out: &mut String) {
    if prec(e) < min || noise.chance(6) {
        out.push('(');
        out.push_str(noise.opt_ws());
        noisy_expr(e, 0, noise, out);
        out.push_str(noise.opt_ws());
        out.push(')');
        return;
    }
    match e {
        Expr::Or(l, r) | Expr::And(l, r) => {
            let (kw, p) = if matches!(e, Expr::Or(..)) {
                ("or", 1)
            } else {
                ("and", 2)
            };
            noisy_expr(l, p, noise, out);
            out.push_str(noise.ws());
            out.push_str(&noise.case(kw));
            out.push_str(noise.ws());
            noisy_expr(r, p + 1, noise, out);
        }
        Expr::Not(inner) => {
            out.push_str(&noise.case("not"));
            out.push_str(noise.ws());
            noisy_expr(inner, 3, noise, out);
        }
        Expr::Compare { field, op, value } => {
            noisy_field(field, noise, out);
            out.push_str(noise.opt_ws());
            out.push_str(match op {
                CompareOp::Ne => noise.pick(&["!=", "<>"]),
                other => other_symbol(*other),
            });
            out.push_str(noise.opt_ws());
            noisy_literal(value, noise, out);
        }
        Expr::In { field, values } => {
            noisy_field(field, noise, out);
            out.push_str(noise.ws());
            out.push_str(&noise.case("in"));
            out.push_str(noise.opt_ws());
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push_str(noise.opt_ws());
                    out.push(',');
                }
                out.push_str(noise.opt_ws());
                noisy_literal(v, noise, out);
            }
            out.push_str(noise.opt_ws());
            out.push(']');
        }
    }
}

fn other_symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "!=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
    }
}

fn noisy_field(field: &flotilla_filter::Field, noise: &mut Noise, out: &mut String) {
    let canonical = field.to_string();
    match canonical.strip_prefix('$') {
        Some(name) => {
            out.push('$');
            out.push_str(&noise.case(name));
        }
        None => match canonical.split_once('.') {
            Some((c, n)) => {
                out.push_str(c);
                out.push_str(noise.opt_ws());
                out.push('.');
                out.push_str(noise.opt_ws());
                out.push_str(n);
            }
            None => out.push_str(&canonical),
        },
    }
}

fn noisy_literal(lit: &Literal, noise: &mut Noise, out: &mut String) {
    match lit {
        Literal::String(s) => {
            let quote = if noise.chance(2) { '\'' } else { '"' };
            out.push(quote);
            for c in s.chars() {
                // the other quote may be escaped or not
                if c == quote || c == '\\' || ((c == '"' || c == '\'') && noise.chance(2)) {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push(quote);
        }
        Literal::Number(n) => {
            let text = match noise.next() % 4 {
                0 => format!("{n}"),
                1 => format!("{n:e}"),
                2 => format!("{n:E}"),
                _ => format!("{n:?}"),
            };
            out.push_str(&text);
        }
        Literal::Bool(b) => out.push_str(&noise.case(if *b { "true" } else { "false" })),
    }
}

fn token_soup() -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "a",
        "b.c",
        "$id",
        "$enabled",
        "$bogus",
        "=",
        "!=",
        "<>",
        "<",
        ">=",
        "IN",
        "[",
        "]",
        ",",
        "(",
        ")",
        "NOT",
        "AND",
        "OR",
        "1",
        "-2.5e3",
        "\"s\"",
        "'t'",
        "true",
        "FALSE",
        "dtmi:x:y;1",
        "~",
        "\"",
        "\\",
        ".",
        "",
    ]);
    (
        prop::sample::select(vec![
            "SELECT * FROM devices WHERE ",
            "SELECT * FROM dtmi:a;1 ",
            "",
        ]),
        prop::collection::vec(fragment, 0..10),
    )
        .prop_map(|(prefix, parts)| format!("{prefix}{}", parts.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_then_parse_is_identity(f in arb_valid_filter()) {
        let printed = f.to_string();
        let reparsed = parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&reparsed, &f, "printed as {}", printed);
        prop_assert_eq!(reparsed.to_string(), printed);
    }

    #[test]
    fn noisy_spellings_parse_to_the_same_tree(f in arb_valid_filter(), seed in 1u64..) {
        let text = noisy(&f, &mut Noise(seed));
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(&parsed, &f, "noisy text {:?}", text);
        // parse(print(parse(s))) == parse(s)
        prop_assert_eq!(parse(&parsed.to_string()).unwrap(), parsed);
    }

    #[test]
    fn parsing_is_stable_and_never_panics(text in token_soup()) {
        if let Ok(f) = parse(&text) {
            let printed = f.to_string();
            let again = parse(&printed).map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
            prop_assert_eq!(&again, &f);
            prop_assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn error_positions_are_within_the_input(text in token_soup()) {
        if let Err(e) = parse(&text) {
            prop_assert!(e.position <= text.chars().count(), "{} for {:?}", e, text);
        }
    }
}
