//! Canonical printing. The output always re-parses to the identical tree:
//! parentheses appear only where precedence (OR < AND < NOT) or the
//! left-associativity of the parser would otherwise change the shape.

use std::fmt::{self, Display, Formatter};

use crate::ast::{CompareOp, Expr, Field, Filter, Literal, Source};

impl Display for Filter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "SELECT * FROM {}", self.source)?;
        if let Some(cond) = &self.condition {
            write!(f, " WHERE {cond}")?;
        }
        Ok(())
    }
}

impl Display for Source {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Source::Devices => f.write_str("devices"),
            Source::Template(dtmi) => f.write_str(dtmi),
        }
    }
}

/// Binding strength; a child printed in a context demanding more gets
/// parentheses.
fn precedence(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        Expr::Not(_) => 3,
        Expr::Compare { .. } | Expr::In { .. } => 4,
    }
}

fn write_expr(f: &mut Formatter<'_>, e: &Expr, min_prec: u8) -> fmt::Result {
    if precedence(e) < min_prec {
        f.write_str("(")?;
        write_expr(f, e, 0)?;
        return f.write_str(")");
    }
    match e {
        // The parser builds left-leaning chains, so a right child of the
        // same operator needs parentheses to keep its shape.
        Expr::Or(l, r) => {
            write_expr(f, l, 1)?;
            f.write_str(" OR ")?;
            write_expr(f, r, 2)
        }
        Expr::And(l, r) => {
            write_expr(f, l, 2)?;
            f.write_str(" AND ")?;
            write_expr(f, r, 3)
        }
        Expr::Not(inner) => {
            f.write_str("NOT ")?;
            write_expr(f, inner, 3)
        }
        Expr::Compare { field, op, value } => write!(f, "{field} {op} {value}"),
        Expr::In { field, values } => {
            write!(f, "{field} IN [")?;
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str("]")
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_expr(f, self, 0)
    }
}

impl Display for CompareOp {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Field::Property {
                component: Some(c),
                name,
            } => write!(f, "{c}.{name}"),
            Field::Property {
                component: None,
                name,
            } => f.write_str(name),
            system => f.write_str(system.system_name().unwrap_or_default()),
        }
    }
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")
            }
            Literal::Number(n) => write_number(f, *n),
            Literal::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Both `{}` and `{:e}` print the shortest digits that round-trip; plain
/// notation reads better for everyday magnitudes, and exponent notation
/// keeps 1e300 from printing as 301 digits. Either form is valid syntax.
fn write_number(f: &mut Formatter<'_>, n: f64) -> fmt::Result {
    let magnitude = n.abs();
    if n == 0.0 || (1e-6..1e21).contains(&magnitude) {
        write!(f, "{n}")
    } else {
        write!(f, "{n:e}")
    }
}
