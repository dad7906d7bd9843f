//! In-memory evaluation. It defines the reference semantics that the SQL
//! translation must reproduce, and the tests check the two against each
//! other on real databases.

use std::cmp::Ordering;

use serde_json::Value;

use crate::ast::{CompareOp, Expr, Field, Filter, Literal, Source};

/// The parts of a device a filter can look at.
#[derive(Debug, Clone, Copy)]
pub struct DeviceView<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub template: Option<&'a str>,
    pub provisioned: bool,
    pub simulated: bool,
    pub enabled: bool,
    /// A JSON object of cloud property values (consulted first).
    pub cloud_properties: &'a Value,
    /// A JSON object of reported property values (consulted when the cloud
    /// properties lack the property).
    pub reported_properties: &'a Value,
}

impl Filter {
    /// Whether the device belongs to the group this filter defines.
    pub fn matches(&self, device: &DeviceView<'_>) -> bool {
        let in_source = match &self.source {
            Source::Devices => true,
            Source::Template(t) => device.template == Some(t.as_str()),
        };
        in_source && self.condition.as_ref().is_none_or(|c| c.matches(device))
    }
}

impl Expr {
    /// Two-valued evaluation: a comparison that cannot be made (missing
    /// property, mismatched types) is simply false, and NOT negates that.
    pub fn matches(&self, device: &DeviceView<'_>) -> bool {
        match self {
            Expr::Or(l, r) => l.matches(device) || r.matches(device),
            Expr::And(l, r) => l.matches(device) && r.matches(device),
            Expr::Not(e) => !e.matches(device),
            Expr::Compare { field, op, value } => compare(device, field, *op, value),
            Expr::In { field, values } => values
                .iter()
                .any(|v| compare(device, field, CompareOp::Eq, v)),
        }
    }
}

fn compare(d: &DeviceView<'_>, field: &Field, op: CompareOp, lit: &Literal) -> bool {
    match field {
        Field::Id => compare_str(Some(d.id), op, lit),
        Field::DisplayName => compare_str(Some(d.display_name), op, lit),
        Field::Template => compare_str(d.template, op, lit),
        Field::Provisioned => compare_bool(d.provisioned, op, lit),
        Field::Simulated => compare_bool(d.simulated, op, lit),
        Field::Enabled => compare_bool(d.enabled, op, lit),
        Field::Property { component, name } => {
            let component = component.as_deref();
            lookup(d.cloud_properties, component, name)
                .or_else(|| lookup(d.reported_properties, component, name))
                .is_some_and(|v| compare_json(v, op, lit))
        }
    }
}

/// Finds `name` or `component.name`; JSON `null` counts as absent so that
/// a cleared cloud property falls back to the reported one.
fn lookup<'v>(root: &'v Value, component: Option<&str>, name: &str) -> Option<&'v Value> {
    let parent = match component {
        Some(c) => root.get(c)?,
        None => root,
    };
    parent.get(name).filter(|v| !v.is_null())
}

/// Byte-wise ordering, matching SQL's binary collation on UTF-8 text.
fn compare_str(value: Option<&str>, op: CompareOp, lit: &Literal) -> bool {
    match (value, lit) {
        (Some(v), Literal::String(s)) => op.holds(v.cmp(s.as_str())),
        _ => false,
    }
}

/// Booleans have no order, so only `=`/`!=` can hold.
fn compare_bool(value: bool, op: CompareOp, lit: &Literal) -> bool {
    match lit {
        Literal::Bool(b) if op.is_equality() => op.holds(value.cmp(b)),
        _ => false,
    }
}

fn compare_json(value: &Value, op: CompareOp, lit: &Literal) -> bool {
    match (value, lit) {
        (Value::String(v), Literal::String(_)) => compare_str(Some(v), op, lit),
        (Value::Number(v), Literal::Number(n)) => v
            .as_f64()
            .and_then(|v| v.partial_cmp(n))
            .is_some_and(|ord: Ordering| op.holds(ord)),
        (Value::Bool(v), Literal::Bool(_)) => compare_bool(*v, op, lit),
        _ => false,
    }
}
