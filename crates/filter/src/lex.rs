//! On-demand tokenizer. The parser asks for one token at a time, so a
//! character that is merely unexpected (say `~`) becomes an `Unknown` token
//! and the parser can report what it *expected* there instead of a bare
//! "unexpected character".

use crate::error::FilterError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokKind {
    /// `[A-Za-z][A-Za-z0-9_]*`: keyword, property name, `devices`, `true`...
    Ident(String),
    /// `$name`; holds the name without the `$`.
    System(String),
    /// A complete `dtmi:...` identifier.
    Dtmi(String),
    /// A quoted string with escapes already resolved.
    Str(String),
    Num(f64),
    /// Punctuation and operators.
    Sym(&'static str),
    /// A character that starts no token.
    Unknown(char),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokKind,
    /// Character offsets: `start` is inclusive, `end` exclusive.
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// Case-insensitive keyword test.
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.kind, TokKind::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    pub fn is_sym(&self, sym: &str) -> bool {
        matches!(&self.kind, TokKind::Sym(s) if *s == sym)
    }
}

/// Longest symbols first so `<=` is not read as `<` followed by `=`.
const SYMBOLS: [&str; 14] = [
    "<=", "<>", ">=", "!=", "<", ">", "=", "(", ")", "[", "]", ",", "*", ".",
];

/// Reads the token starting at or after `pos` (after skipping whitespace).
pub(crate) fn next_token(chars: &[char], mut pos: usize) -> Result<Token, FilterError> {
    while chars.get(pos).is_some_and(|c| c.is_whitespace()) {
        pos += 1;
    }
    let start = pos;
    let Some(&c) = chars.get(pos) else {
        return Ok(Token {
            kind: TokKind::Eof,
            start,
            end: start,
        });
    };
    let at = |i: usize| chars.get(i).copied();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';

    let (kind, end) = if c.is_ascii_alphabetic() {
        let end = scan(chars, pos, is_word);
        let word: String = chars[pos..end].iter().collect();
        if word == "dtmi" && at(end) == Some(':') {
            return dtmi(chars, start);
        }
        (TokKind::Ident(word), end)
    } else if c == '$' && at(pos + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
        let end = scan(chars, pos + 1, is_word);
        (TokKind::System(chars[pos + 1..end].iter().collect()), end)
    } else if c == '"' || c == '\'' {
        return string(chars, start, c);
    } else if c.is_ascii_digit() || (c == '-' && at(pos + 1).is_some_and(|c| c.is_ascii_digit())) {
        return number(chars, start);
    } else if let Some(sym) = SYMBOLS
        .iter()
        .find(|s| s.chars().enumerate().all(|(i, sc)| at(pos + i) == Some(sc)))
    {
        (TokKind::Sym(sym), pos + sym.chars().count())
    } else {
        (TokKind::Unknown(c), pos + 1)
    };
    Ok(Token { kind, start, end })
}

fn scan(chars: &[char], mut pos: usize, pred: impl Fn(char) -> bool) -> usize {
    while chars.get(pos).copied().is_some_and(&pred) {
        pos += 1;
    }
    pos
}

/// Describes the character at `pos` for "found ..." messages.
fn found_char(chars: &[char], pos: usize) -> String {
    match chars.get(pos) {
        Some(c) => format!("\"{c}\""),
        None => "end of input".to_string(),
    }
}

fn string(chars: &[char], start: usize, quote: char) -> Result<Token, FilterError> {
    let mut value = String::new();
    let mut pos = start + 1;
    loop {
        match chars.get(pos) {
            None => {
                return Err(FilterError::new(
                    start,
                    format!("unterminated string: expected a closing {quote}, found end of input"),
                ));
            }
            Some(&c) if c == quote => break,
            Some('\\') => match chars.get(pos + 1) {
                Some(&e @ ('"' | '\'' | '\\')) => {
                    value.push(e);
                    pos += 2;
                }
                _ => {
                    return Err(FilterError::new(
                        pos,
                        format!(
                            "expected an escape sequence (\\\", \\' or \\\\), found \"\\\" followed by {}",
                            found_char(chars, pos + 1)
                        ),
                    ));
                }
            },
            Some(&c) => {
                value.push(c);
                pos += 1;
            }
        }
    }
    Ok(Token {
        kind: TokKind::Str(value),
        start,
        end: pos + 1,
    })
}

fn number(chars: &[char], start: usize) -> Result<Token, FilterError> {
    let digit = |c: char| c.is_ascii_digit();
    let mut pos = start;
    if chars[pos] == '-' {
        pos += 1;
    }
    pos = scan(chars, pos, digit);
    if chars.get(pos) == Some(&'.') {
        if !chars.get(pos + 1).copied().is_some_and(digit) {
            return Err(FilterError::new(
                pos + 1,
                format!(
                    "expected a digit after the decimal point, found {}",
                    found_char(chars, pos + 1)
                ),
            ));
        }
        pos = scan(chars, pos + 1, digit);
    }
    if matches!(chars.get(pos), Some('e' | 'E')) {
        let mut exp = pos + 1;
        if matches!(chars.get(exp), Some('+' | '-')) {
            exp += 1;
        }
        if !chars.get(exp).copied().is_some_and(digit) {
            return Err(FilterError::new(
                exp,
                format!(
                    "expected a digit in the exponent, found {}",
                    found_char(chars, exp)
                ),
            ));
        }
        pos = scan(chars, exp, digit);
    }
    let text: String = chars[start..pos].iter().collect();
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(Token {
            kind: TokKind::Num(n),
            start,
            end: pos,
        }),
        _ => Err(FilterError::new(
            start,
            format!("expected a number within the range of a 64-bit float, found \"{text}\""),
        )),
    }
}

/// `dtmi:` followed by non-empty `[A-Za-z0-9_]` segments separated by `:`,
/// with an optional `;version`.
fn dtmi(chars: &[char], start: usize) -> Result<Token, FilterError> {
    let body_start = start + "dtmi:".len();
    let mut pos = scan(chars, body_start, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == ':'
    });
    // A segment is empty where a segment start (after `dtmi:` or a `:`)
    // coincides with a segment end (a `:` or the end of the body).
    let empty_segment = (body_start..=pos)
        .find(|&p| (p == body_start || chars[p - 1] == ':') && (p == pos || chars[p] == ':'));
    if let Some(p) = empty_segment {
        return Err(FilterError::new(
            p,
            format!(
                "expected a DTMI segment (letters, digits or _), found {}",
                found_char(chars, p)
            ),
        ));
    }
    if chars.get(pos) == Some(&';') {
        let digits_end = scan(chars, pos + 1, |c| c.is_ascii_digit());
        if digits_end == pos + 1 {
            return Err(FilterError::new(
                pos + 1,
                format!(
                    "expected a DTMI version number after \";\", found {}",
                    found_char(chars, pos + 1)
                ),
            ));
        }
        pos = digits_end;
    }
    Ok(Token {
        kind: TokKind::Dtmi(chars[start..pos].iter().collect()),
        start,
        end: pos,
    })
}
