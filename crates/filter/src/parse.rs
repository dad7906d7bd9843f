//! Recursive-descent parser. Each grammar rule is one method, and every
//! error names what the rule expected and the token it found instead, at
//! that token's character position.

use crate::ast::{
    CompareOp, Expr, Field, Filter, Literal, MAX_NAME_LEN, Source, ValueKind, is_keyword,
};
use crate::error::FilterError;
use crate::lex::{TokKind, Token, next_token};

/// Parses a `SELECT * FROM ... [WHERE ...]` filter, enforcing the type
/// rules (so a stored filter can always be evaluated and translated).
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut p = Parser {
        chars: input.chars().collect(),
        pos: 0,
        depth: 0,
        values: 0,
    };
    p.filter()
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Deepest nesting of `(` and `NOT` accepted: the parser and every walk
/// over the tree recurse, and a filter arrives from the network.
pub const MAX_NESTING: usize = 64;

/// Most literals (comparisons plus IN values) accepted, which bounds the
/// tree's size and keeps the SQL under the databases' parameter limits.
pub const MAX_VALUES: usize = 1000;

const COMPARISON_OPERATORS: &str = "a comparison operator (=, !=, <, <=, >, >=, IN)";

struct Parser {
    chars: Vec<char>,
    /// Character offset just after the last consumed token.
    pos: usize,
    /// Current nesting of `(` and `NOT`.
    depth: usize,
    /// Literals read so far (one per comparison, one per IN value).
    values: usize,
}

impl Parser {
    fn peek(&self) -> Result<Token, FilterError> {
        next_token(&self.chars, self.pos)
    }

    fn bump(&mut self) -> Result<Token, FilterError> {
        let tok = self.peek()?;
        self.pos = tok.end;
        Ok(tok)
    }

    /// How a token appears in "found ..." messages: its source text, quoted
    /// (string literals already carry their own quotes).
    fn describe(&self, tok: &Token) -> String {
        const MAX: usize = 40;
        let text: String = self.chars[tok.start..tok.end].iter().take(MAX).collect();
        let ellipsis = if tok.end - tok.start > MAX { "..." } else { "" };
        match tok.kind {
            TokKind::Eof => "end of input".to_string(),
            TokKind::Str(_) => format!("{text}{ellipsis}"),
            _ => format!("\"{text}{ellipsis}\""),
        }
    }

    fn expected(&self, tok: &Token, what: &str) -> FilterError {
        FilterError::new(
            tok.start,
            format!("expected {what}, found {}", self.describe(tok)),
        )
    }

    fn expect(&mut self, what: &str, ok: impl Fn(&Token) -> bool) -> Result<Token, FilterError> {
        let tok = self.bump()?;
        if ok(&tok) {
            Ok(tok)
        } else {
            Err(self.expected(&tok, what))
        }
    }

    fn filter(&mut self) -> Result<Filter, FilterError> {
        self.expect("SELECT", |t| t.is_kw("SELECT"))?;
        self.expect("\"*\"", |t| t.is_sym("*"))?;
        self.expect("FROM", |t| t.is_kw("FROM"))?;
        let tok = self.bump()?;
        let source = match tok.kind {
            TokKind::Ident(ref s) if s.eq_ignore_ascii_case("devices") => Source::Devices,
            TokKind::Dtmi(ref s) => Source::Template(s.clone()),
            _ => return Err(self.expected(&tok, "\"devices\" or a DTMI")),
        };
        let tok = self.bump()?;
        let condition = match tok.kind {
            TokKind::Eof => None,
            _ if tok.is_kw("WHERE") => {
                let expr = self.expr()?;
                self.expect("AND, OR or end of input", |t| t.kind == TokKind::Eof)?;
                Some(expr)
            }
            _ => return Err(self.expected(&tok, "WHERE or end of input")),
        };
        Ok(Filter { source, condition })
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and_expr()?;
        while self.peek()?.is_kw("OR") {
            self.bump()?;
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.not_expr()?;
        while self.peek()?.is_kw("AND") {
            self.bump()?;
            left = Expr::And(Box::new(left), Box::new(self.not_expr()?));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr, FilterError> {
        let tok = self.peek()?;
        let is_not = tok.is_kw("NOT");
        if !is_not && !tok.is_sym("(") {
            return self.comparison();
        }
        self.bump()?;
        self.depth += 1;
        if self.depth > MAX_NESTING {
            let what = format!("at most {MAX_NESTING} nested parentheses and NOTs");
            return Err(self.expected(&tok, &what));
        }
        let expr = if is_not {
            Expr::Not(Box::new(self.not_expr()?))
        } else {
            let inner = self.expr()?;
            self.expect("AND, OR or \")\"", |t| t.is_sym(")"))?;
            inner
        };
        self.depth -= 1;
        Ok(expr)
    }

    fn comparison(&mut self) -> Result<Expr, FilterError> {
        let field = self.field()?;
        let op_tok = self.bump()?;
        let op = match op_tok.kind {
            TokKind::Sym("=") => CompareOp::Eq,
            TokKind::Sym("!=" | "<>") => CompareOp::Ne,
            TokKind::Sym("<") => CompareOp::Lt,
            TokKind::Sym("<=") => CompareOp::Le,
            TokKind::Sym(">") => CompareOp::Gt,
            TokKind::Sym(">=") => CompareOp::Ge,
            _ if op_tok.is_kw("IN") => return self.in_list(field),
            _ => return Err(self.expected(&op_tok, COMPARISON_OPERATORS)),
        };
        if field.system_kind() == Some(ValueKind::Bool) && !op.is_equality() {
            let what = format!("=, !=, <> or IN after {}", field_name(&field));
            return Err(self.expected(&op_tok, &what));
        }
        let value = self.literal(&field)?;
        if value.kind() == ValueKind::Bool && !op.is_equality() {
            return Err(self.expected(&op_tok, "=, !=, <> or IN before a boolean value"));
        }
        Ok(Expr::Compare { field, op, value })
    }

    fn in_list(&mut self, field: Field) -> Result<Expr, FilterError> {
        self.expect("\"[\" to start the IN list", |t| t.is_sym("["))?;
        let mut values = vec![self.literal(&field)?];
        loop {
            let tok = self.bump()?;
            if tok.is_sym("]") {
                return Ok(Expr::In { field, values });
            }
            if !tok.is_sym(",") {
                return Err(self.expected(&tok, "\",\" or \"]\""));
            }
            values.push(self.literal(&field)?);
        }
    }

    fn field(&mut self) -> Result<Field, FilterError> {
        let tok = self.bump()?;
        match &tok.kind {
            TokKind::System(name) => Field::from_system_name(name).ok_or_else(|| {
                self.expected(
                    &tok,
                    "a system field ($id, $displayName, $template, $provisioned, $simulated, $enabled)",
                )
            }),
            TokKind::Ident(first) if !is_keyword(first) => {
                self.check_name_len(&tok, first)?;
                if !self.peek()?.is_sym(".") {
                    return Ok(Field::Property {
                        component: None,
                        name: first.clone(),
                    });
                }
                self.bump()?;
                let tok2 = self.bump()?;
                match &tok2.kind {
                    TokKind::Ident(name) if !is_keyword(name) => {
                        self.check_name_len(&tok2, name)?;
                        Ok(Field::Property {
                            component: Some(first.clone()),
                            name: name.clone(),
                        })
                    }
                    _ => Err(self.expected(&tok2, "a property name after \".\"")),
                }
            }
            _ => Err(self.expected(&tok, "a condition (a $field, a property name, NOT or \"(\")")),
        }
    }

    fn check_name_len(&self, tok: &Token, name: &str) -> Result<(), FilterError> {
        if name.chars().count() > MAX_NAME_LEN {
            return Err(self.expected(tok, &format!("a name of at most {MAX_NAME_LEN} characters")));
        }
        Ok(())
    }

    /// Reads a literal and checks it against the field's type.
    fn literal(&mut self, field: &Field) -> Result<Literal, FilterError> {
        let tok = self.bump()?;
        self.values += 1;
        if self.values > MAX_VALUES {
            let what = format!("at most {MAX_VALUES} comparisons and IN values in total");
            return Err(self.expected(&tok, &what));
        }
        let value = match &tok.kind {
            TokKind::Str(s) => Literal::String(s.clone()),
            TokKind::Num(n) => Literal::Number(*n),
            _ if tok.is_kw("TRUE") => Literal::Bool(true),
            _ if tok.is_kw("FALSE") => Literal::Bool(false),
            _ => return Err(self.expected(&tok, "a value (a string, a number, true or false)")),
        };
        match field.system_kind() {
            Some(ValueKind::String) if value.kind() != ValueKind::String => {
                Err(self.expected(&tok, &format!("a quoted string for {}", field_name(field))))
            }
            Some(ValueKind::Bool) if value.kind() != ValueKind::Bool => {
                Err(self.expected(&tok, &format!("true or false for {}", field_name(field))))
            }
            _ => Ok(value),
        }
    }
}

fn field_name(field: &Field) -> String {
    field
        .system_name()
        .map(str::to_string)
        .or_else(|| field.property_path())
        .unwrap_or_default()
}
