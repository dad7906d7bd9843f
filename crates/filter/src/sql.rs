//! Translation of a filter into one boolean SQL condition over the
//! `devices` table, so group membership is a single query rather than one
//! evaluation per device.
//!
//! Every leaf is made two-valued (`COALESCE(..., FALSE)` or a `CASE` with
//! an `ELSE FALSE`), so SQL `NULL` never reaches a `NOT` and the result
//! agrees with [`Filter::matches`]. All values and JSON paths are bound
//! parameters written as `?`; no user text ever lands in the SQL string.

use crate::ast::{CompareOp, Expr, Field, Filter, Literal, Source, ValueKind};

/// Which SQL engine the condition is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Booleans are INTEGER 0/1; JSON via `json_type`/`json_extract`.
    Sqlite,
    /// Booleans are BOOLEAN; JSON via `::jsonb`, `jsonb_typeof`, `#>`/`#>>`.
    Postgres,
}

/// A value to bind to the next `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    Text(String),
    Real(f64),
    /// Compared only with the boolean columns; bind as an integer 0/1 in
    /// SQLite (sqlx's `bool` encoding already does that) and as BOOLEAN in
    /// Postgres.
    Bool(bool),
}

/// A boolean SQL expression and the parameters for its `?` placeholders,
/// in order.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlCondition {
    pub sql: String,
    pub params: Vec<SqlParam>,
}

impl SqlCondition {
    /// The SQL with the `?` placeholders renumbered `$first`, `$first+1`,
    /// ... as Postgres wants. Safe because `?` appears nowhere else.
    pub fn numbered_placeholders(&self, first: usize) -> String {
        let mut out = String::with_capacity(self.sql.len() + 2 * self.params.len());
        let mut n = first;
        for c in self.sql.chars() {
            if c == '?' {
                out.push('$');
                out.push_str(&n.to_string());
                n += 1;
            } else {
                out.push(c);
            }
        }
        out
    }
}

/// Translates a filter into a condition for `SELECT ... FROM devices WHERE`.
pub fn condition(filter: &Filter, dialect: Dialect) -> SqlCondition {
    let mut b = Builder {
        dialect,
        sql: String::new(),
        params: Vec::new(),
    };
    match (&filter.source, &filter.condition) {
        (Source::Devices, None) => b.sql.push_str("1=1"),
        (Source::Devices, Some(e)) => b.expr(e),
        (Source::Template(t), cond) => {
            b.compare(&Field::Template, CompareOp::Eq, &Literal::String(t.clone()));
            if let Some(e) = cond {
                b.sql.push_str(" AND ");
                b.expr(e);
            }
        }
    }
    SqlCondition {
        sql: b.sql,
        params: b.params,
    }
}

/// A condition that never holds, for comparisons the type rules forbid
/// (they cannot come from `parse`, but an AST can be built by hand).
const NEVER: &str = "1=0";

struct Builder {
    dialect: Dialect,
    sql: String,
    params: Vec<SqlParam>,
}

impl Builder {
    fn push(&mut self, s: &str) {
        self.sql.push_str(s);
    }

    fn param(&mut self, p: SqlParam) {
        self.sql.push('?');
        self.params.push(p);
    }

    fn binary(&mut self, l: &Expr, keyword: &str, r: &Expr) {
        self.push("(");
        self.expr(l);
        self.push(keyword);
        self.expr(r);
        self.push(")");
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Or(l, r) => self.binary(l, " OR ", r),
            Expr::And(l, r) => self.binary(l, " AND ", r),
            Expr::Not(inner) => {
                self.push("(NOT ");
                self.expr(inner);
                self.push(")");
            }
            Expr::Compare { field, op, value } => self.compare(field, *op, value),
            // An OR of equalities keeps the per-type handling in one place.
            Expr::In { field, values } => {
                if values.is_empty() {
                    return self.push(NEVER);
                }
                self.push("(");
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        self.push(" OR ");
                    }
                    self.compare(field, CompareOp::Eq, v);
                }
                self.push(")");
            }
        }
    }

    fn compare(&mut self, field: &Field, op: CompareOp, lit: &Literal) {
        let column = match field {
            Field::Id => "id",
            Field::DisplayName => "display_name",
            Field::Template => "template",
            Field::Provisioned => "provisioned",
            Field::Simulated => "simulated",
            Field::Enabled => "enabled",
            Field::Property { .. } => {
                let path = field.property_path().unwrap_or_default();
                return self.property(&path, op, lit);
            }
        };
        match (lit, field.system_kind()) {
            (Literal::String(s), Some(ValueKind::String)) => {
                self.push("COALESCE(");
                self.push(column);
                self.push(self.binary_collation());
                self.push(sql_op(op));
                self.param(SqlParam::Text(s.clone()));
                self.push(", FALSE)");
            }
            (Literal::Bool(b), Some(ValueKind::Bool)) if op.is_equality() => {
                self.push("COALESCE(");
                self.push(column);
                self.push(sql_op(op));
                self.param(SqlParam::Bool(*b));
                self.push(", FALSE)");
            }
            _ => self.push(NEVER),
        }
    }

    /// Postgres text comparison follows the database collation unless told
    /// otherwise; "C" gives the byte order SQLite and Rust use.
    fn binary_collation(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }

    /// A JSON path argument: `$.c.p` for SQLite, a text[] for Postgres.
    fn path(&mut self, path: &str) {
        match self.dialect {
            Dialect::Sqlite => self.param(SqlParam::Text(format!("$.{path}"))),
            Dialect::Postgres => {
                self.push("string_to_array(");
                self.param(SqlParam::Text(path.to_string()));
                self.push(", '.')");
            }
        }
    }

    /// The JSON type name of the property, taken from the cloud properties
    /// unless absent or null there, then from the reported properties.
    fn property_type(&mut self, path: &str) {
        let (typeof_fn, cloud, reported, sep, close) = match self.dialect {
            Dialect::Sqlite => (
                "json_type(",
                "cloud_properties",
                "reported_properties",
                ", ",
                ")",
            ),
            Dialect::Postgres => (
                "jsonb_typeof(",
                "cloud_properties::jsonb",
                "reported_properties::jsonb",
                " #> ",
                ")",
            ),
        };
        self.push("COALESCE(NULLIF(");
        self.push(typeof_fn);
        self.push(cloud);
        self.push(sep);
        self.path(path);
        self.push(close);
        self.push(", 'null'), ");
        self.push(typeof_fn);
        self.push(reported);
        self.push(sep);
        self.path(path);
        self.push(close);
        self.push(")");
    }

    /// The property's scalar value (SQLite: native value; Postgres: text),
    /// chosen by the same cloud-then-reported rule as `property_type`:
    /// both extractors yield SQL NULL exactly where the type is absent/null.
    fn property_value(&mut self, path: &str) {
        let (open, cloud, reported, sep, close) = match self.dialect {
            Dialect::Sqlite => (
                "json_extract(",
                "cloud_properties",
                "reported_properties",
                ", ",
                ")",
            ),
            Dialect::Postgres => (
                "(",
                "cloud_properties::jsonb",
                "reported_properties::jsonb",
                " #>> ",
                ")",
            ),
        };
        self.push("COALESCE(");
        self.push(open);
        self.push(cloud);
        self.push(sep);
        self.path(path);
        self.push(close);
        self.push(", ");
        self.push(open);
        self.push(reported);
        self.push(sep);
        self.path(path);
        self.push(close);
        self.push(")");
    }

    fn property(&mut self, path: &str, op: CompareOp, lit: &Literal) {
        let pg = self.dialect == Dialect::Postgres;
        match lit {
            Literal::Bool(b) => {
                if !op.is_equality() {
                    return self.push(NEVER);
                }
                let wanted = if *b == (op == CompareOp::Eq) {
                    "true"
                } else {
                    "false"
                };
                self.push("COALESCE(");
                self.property_type(path);
                if pg {
                    // jsonb_typeof says 'boolean'; the text value tells which.
                    self.push(" = 'boolean' AND ");
                    self.property_value(path);
                    self.push(" = '");
                } else {
                    // json_type already distinguishes 'true' from 'false'.
                    self.push(" = '");
                }
                self.push(wanted);
                self.push("', FALSE)");
            }
            // CASE guarantees the cast only runs on values of the right
            // type, so a string never reaches a numeric cast.
            Literal::String(s) => {
                self.push("COALESCE(CASE WHEN ");
                self.property_type(path);
                self.push(if pg { " = 'string'" } else { " = 'text'" });
                self.push(" THEN ");
                self.property_value(path);
                self.push(self.binary_collation());
                self.push(sql_op(op));
                self.param(SqlParam::Text(s.clone()));
                self.push(" ELSE FALSE END, FALSE)");
            }
            // Compared as doubles on both sides, exactly like the in-memory
            // `f64` comparison (Postgres' numeric would differ in rounding).
            Literal::Number(n) => {
                self.push("COALESCE(CASE WHEN ");
                self.property_type(path);
                self.push(if pg {
                    " = 'number'"
                } else {
                    " IN ('integer', 'real')"
                });
                self.push(" THEN CAST(");
                self.property_value(path);
                self.push(if pg { " AS float8)" } else { " AS REAL)" });
                self.push(sql_op(op));
                if pg {
                    self.push("CAST(");
                    self.param(SqlParam::Real(*n));
                    self.push(" AS float8)");
                } else {
                    self.param(SqlParam::Real(*n));
                }
                self.push(" ELSE FALSE END, FALSE)");
            }
        }
    }
}

fn sql_op(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => " = ",
        CompareOp::Ne => " <> ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
    }
}
