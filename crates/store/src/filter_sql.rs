//! Compiles a device-group filter into one boolean SQL condition over the
//! `devices` table, so group membership is a single query rather than one
//! evaluation per device. The column map lives here, beside the table: the
//! filter crate knows the language, not the schema.
//!
//! Every leaf is made two-valued (`COALESCE(..., FALSE)` or a `CASE` with
//! an `ELSE FALSE`), so SQL `NULL` never reaches a `NOT` and the result
//! agrees with [`Filter::matches`]. All values and JSON paths are bound
//! parameters written as `?`; no user text ever lands in the SQL string.

use std::mem::discriminant;

use flotilla_filter::{CompareOp, Expr, Field, Filter, Literal, Source, ValueKind};

use crate::Dialect;

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

    /// A chain of one operator, written as a balanced tree: the parser's left-deep `a OR b OR
    /// c ...` would nest as deep as it is long, and SQLite refuses expressions 1,000 deep.
    fn chain<T>(&mut self, items: &[T], keyword: &str, item: &mut impl FnMut(&mut Self, &T)) {
        match items {
            [] => self.push(NEVER),
            [one] => item(self, one),
            _ => {
                let (left, right) = items.split_at(items.len() / 2);
                self.push("(");
                self.chain(left, keyword, item);
                self.push(keyword);
                self.chain(right, keyword, item);
                self.push(")");
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Or(..) => self.chain(&operands(e), " OR ", &mut |b, e| b.expr(e)),
            Expr::And(..) => self.chain(&operands(e), " AND ", &mut |b, e| b.expr(e)),
            Expr::Not(inner) => {
                self.push("(NOT ");
                self.expr(inner);
                self.push(")");
            }
            Expr::Compare { field, op, value } => self.compare(field, *op, value),
            Expr::In { field, values } => self.in_list(field, values),
        }
    }

    /// `field IN [...]`: one membership test per kind of value, each against one JSON array
    /// parameter, so that a list of any length is a few placeholders and a shallow
    /// expression. Booleans (two values at most) are plain equalities.
    fn in_list(&mut self, field: &Field, values: &[Literal]) {
        let mut strings = Vec::new();
        let mut numbers = Vec::new();
        let mut bools = Vec::new();
        for value in values {
            match value {
                Literal::String(s) => strings.push(serde_json::Value::from(s.as_str())),
                Literal::Number(n) => numbers.push(serde_json::Value::from(*n)),
                Literal::Bool(b) if !bools.contains(b) => bools.push(*b),
                Literal::Bool(_) => {}
            }
        }
        let mut tests: Vec<Membership> = bools.into_iter().map(Membership::Equal).collect();
        if !strings.is_empty() {
            tests.push(Membership::Strings(strings.into()));
        }
        if !numbers.is_empty() {
            tests.push(Membership::Numbers(numbers.into()));
        }
        self.chain(&tests, " OR ", &mut |b, test| match test {
            Membership::Equal(value) => b.compare(field, CompareOp::Eq, &Literal::Bool(*value)),
            Membership::Strings(list) => b.string_membership(field, list),
            Membership::Numbers(list) => b.number_membership(field, list),
        });
    }

    /// ` IN (<the JSON array's elements>)`, as text, or as doubles for numbers.
    fn in_json_array(&mut self, list: &serde_json::Value, as_doubles: bool) {
        let (open, close) = match (self.dialect, as_doubles) {
            (Dialect::Sqlite, false) => ("value FROM json_each(", ")"),
            (Dialect::Sqlite, true) => ("CAST(value AS REAL) FROM json_each(", ")"),
            (Dialect::Postgres, false) => ("jsonb_array_elements_text(CAST(", " AS jsonb))"),
            (Dialect::Postgres, true) => (
                "CAST(jsonb_array_elements_text(CAST(",
                " AS jsonb)) AS float8)",
            ),
        };
        self.push(" IN (SELECT ");
        self.push(open);
        self.param(SqlParam::Text(list.to_string()));
        self.push(close);
        self.push(")");
    }

    fn string_membership(&mut self, field: &Field, list: &serde_json::Value) {
        let column = match field {
            Field::Id => "id",
            Field::DisplayName => "display_name",
            Field::Template => "template",
            Field::Provisioned | Field::Simulated | Field::Enabled => return self.push(NEVER),
            Field::Property { .. } => {
                let path = field.property_path().unwrap_or_default();
                return self.string_property(&path, |b| b.in_json_array(list, false));
            }
        };
        self.push("COALESCE(");
        self.push(column);
        self.push(self.binary_collation());
        self.in_json_array(list, false);
        self.push(", FALSE)");
    }

    /// Compared as doubles on both sides, as `property` does.
    fn number_membership(&mut self, field: &Field, list: &serde_json::Value) {
        if !matches!(field, Field::Property { .. }) {
            return self.push(NEVER);
        }
        let path = field.property_path().unwrap_or_default();
        self.number_property(&path, |b| b.in_json_array(list, true));
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

    /// `COALESCE(CASE WHEN <the property is a string> THEN <its value, in byte order><test>
    /// ELSE FALSE END, FALSE)`: CASE keeps values of other types from the test.
    fn string_property(&mut self, path: &str, test: impl FnOnce(&mut Self)) {
        self.push("COALESCE(CASE WHEN ");
        self.property_type(path);
        self.push(match self.dialect {
            Dialect::Sqlite => " = 'text'",
            Dialect::Postgres => " = 'string'",
        });
        self.push(" THEN ");
        self.property_value(path);
        self.push(self.binary_collation());
        test(self);
        self.push(" ELSE FALSE END, FALSE)");
    }

    /// The same for a number, its value cast to a double: a string never reaches the cast.
    fn number_property(&mut self, path: &str, test: impl FnOnce(&mut Self)) {
        self.push("COALESCE(CASE WHEN ");
        self.property_type(path);
        self.push(match self.dialect {
            Dialect::Sqlite => " IN ('integer', 'real')",
            Dialect::Postgres => " = 'number'",
        });
        self.push(" THEN CAST(");
        self.property_value(path);
        self.push(match self.dialect {
            Dialect::Sqlite => " AS REAL)",
            Dialect::Postgres => " AS float8)",
        });
        test(self);
        self.push(" ELSE FALSE END, FALSE)");
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
                self.string_property(path, |b| {
                    b.push(sql_op(op));
                    b.param(SqlParam::Text(s.clone()));
                });
            }
            // Compared as doubles on both sides, exactly like the in-memory
            // `f64` comparison (Postgres' numeric would differ in rounding).
            Literal::Number(n) => {
                self.number_property(path, |b| {
                    b.push(sql_op(op));
                    if pg {
                        b.push("CAST(");
                        b.param(SqlParam::Real(*n));
                        b.push(" AS float8)");
                    } else {
                        b.param(SqlParam::Real(*n));
                    }
                });
            }
        }
    }
}

/// One test of an IN list: equality with a boolean, or membership in a JSON array.
enum Membership {
    Equal(bool),
    Strings(serde_json::Value),
    Numbers(serde_json::Value),
}

/// The operands of a chain of `e`'s operator (OR or AND), left to right, through the parser's
/// left-deep nesting (and any right-hand nesting of the same operator).
fn operands(e: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut pending = vec![e];
    while let Some(next) = pending.pop() {
        match next {
            Expr::Or(l, r) | Expr::And(l, r) if discriminant(next) == discriminant(e) => {
                pending.push(r);
                pending.push(l);
            }
            _ => out.push(next),
        }
    }
    out
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
