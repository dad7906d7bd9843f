//! The syntax tree of a device-group filter.
//!
//! The tree is the single source of truth: the parser produces it, `Display`
//! prints it back canonically, and both the in-memory evaluator and the SQL
//! translator walk it, so they cannot disagree about what a filter means.

/// A parsed `SELECT * FROM <source> [WHERE <condition>]` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Which devices are considered at all.
    pub source: Source,
    /// The `WHERE` clause; `None` selects every device of the source.
    pub condition: Option<Expr>,
}

/// The `FROM` part of a filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// `FROM devices`: all devices.
    Devices,
    /// `FROM dtmi:...`: only devices whose `$template` equals this DTMI.
    Template(String),
}

/// A boolean condition. `Or`/`And` are binary and left-associative when
/// parsed, so `a OR b OR c` is `Or(Or(a, b), c)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        field: Field,
        op: CompareOp,
        value: Literal,
    },
    /// `field IN [v1, v2, ...]`: true when the field equals any value.
    In {
        field: Field,
        values: Vec<Literal>,
    },
}

/// A comparison operator. `<>` is parsed as [`CompareOp::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a comparison looks at: a system field (`$...`) or a property.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    DisplayName,
    Template,
    Provisioned,
    Simulated,
    Enabled,
    /// A cloud property, or failing that a reported property; `component`
    /// is set for `component.property`.
    Property {
        component: Option<String>,
        name: String,
    },
}

/// A constant on the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    /// Always finite: the parser rejects numbers that overflow `f64`.
    Number(f64),
    Bool(bool),
}

/// The JSON-ish type of a literal or field, used by the type rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    String,
    Number,
    Bool,
}

impl Literal {
    pub(crate) fn kind(&self) -> ValueKind {
        match self {
            Literal::String(_) => ValueKind::String,
            Literal::Number(_) => ValueKind::Number,
            Literal::Bool(_) => ValueKind::Bool,
        }
    }
}

impl CompareOp {
    /// Whether the operator only tests (in)equality, the only thing that
    /// makes sense for booleans.
    pub fn is_equality(self) -> bool {
        matches!(self, CompareOp::Eq | CompareOp::Ne)
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// Applies the operator to an already computed ordering.
    pub(crate) fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CompareOp::Eq => ord == Equal,
            CompareOp::Ne => ord != Equal,
            CompareOp::Lt => ord == Less,
            CompareOp::Le => ord != Greater,
            CompareOp::Gt => ord == Greater,
            CompareOp::Ge => ord != Less,
        }
    }
}

impl Field {
    /// The literal type a system field accepts; `None` for properties,
    /// which accept any literal.
    pub fn system_kind(&self) -> Option<ValueKind> {
        match self {
            Field::Id | Field::DisplayName | Field::Template => Some(ValueKind::String),
            Field::Provisioned | Field::Simulated | Field::Enabled => Some(ValueKind::Bool),
            Field::Property { .. } => None,
        }
    }

    /// The `$name` spelling of a system field.
    pub(crate) fn system_name(&self) -> Option<&'static str> {
        Some(match self {
            Field::Id => "$id",
            Field::DisplayName => "$displayName",
            Field::Template => "$template",
            Field::Provisioned => "$provisioned",
            Field::Simulated => "$simulated",
            Field::Enabled => "$enabled",
            Field::Property { .. } => return None,
        })
    }

    /// Looks up a system field by the name after `$` (case-insensitive).
    pub(crate) fn from_system_name(name: &str) -> Option<Field> {
        const ALL: [Field; 6] = [
            Field::Id,
            Field::DisplayName,
            Field::Template,
            Field::Provisioned,
            Field::Simulated,
            Field::Enabled,
        ];
        ALL.into_iter().find(|f| {
            f.system_name()
                .is_some_and(|n| n[1..].eq_ignore_ascii_case(name))
        })
    }

    /// The dotted property path (`name` or `component.name`).
    pub fn property_path(&self) -> Option<String> {
        match self {
            Field::Property {
                component: Some(c),
                name,
            } => Some(format!("{c}.{name}")),
            Field::Property {
                component: None,
                name,
            } => Some(name.clone()),
            _ => None,
        }
    }
}

/// Words that cannot be used as property or component names.
pub const KEYWORDS: [&str; 9] = [
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "TRUE", "FALSE",
];

/// Longest accepted property or component name.
pub const MAX_NAME_LEN: usize = 64;

/// True if `word` is a reserved keyword (case-insensitive).
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}
