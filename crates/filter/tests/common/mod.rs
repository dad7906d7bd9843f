//! Helpers shared by the integration tests: AST constructors, proptest
//! strategies and a fixture of varied devices.
#![allow(dead_code)] // each test binary uses a different subset

use flotilla_filter::{CompareOp, DeviceView, Expr, Field, Filter, Literal, Source, is_keyword};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------- AST constructors ----------

pub fn prop(name: &str) -> Field {
    match name.split_once('.') {
        Some((c, n)) => Field::Property {
            component: Some(c.to_string()),
            name: n.to_string(),
        },
        None => Field::Property {
            component: None,
            name: name.to_string(),
        },
    }
}

pub fn cmp(field: Field, op: CompareOp, value: Literal) -> Expr {
    Expr::Compare { field, op, value }
}

pub fn num(n: f64) -> Literal {
    Literal::Number(n)
}

pub fn s(v: &str) -> Literal {
    Literal::String(v.to_string())
}

pub fn or(l: Expr, r: Expr) -> Expr {
    Expr::Or(Box::new(l), Box::new(r))
}

pub fn and(l: Expr, r: Expr) -> Expr {
    Expr::And(Box::new(l), Box::new(r))
}

pub fn not(e: Expr) -> Expr {
    Expr::Not(Box::new(e))
}

// ---------- strategies for valid (parseable) filters ----------

pub fn arb_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_]{0,10}".prop_filter("keywords are reserved", |n| !is_keyword(n))
}

pub fn arb_property() -> impl Strategy<Value = Field> {
    (proptest::option::of(arb_name()), arb_name())
        .prop_map(|(component, name)| Field::Property { component, name })
}

pub fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 \"'\\\\?]{0,8}", any::<String>(),]
}

pub fn arb_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |n| n.is_finite()),
        (-1000i32..1000).prop_map(f64::from),
        (-1000i32..1000).prop_map(|n| f64::from(n) / 8.0),
        prop::sample::select(vec![
            1e300,
            -1e300,
            -0.5,
            -0.0,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e21,
            1e-7
        ]),
    ]
}

pub fn arb_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ])
}

pub fn arb_eq_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![CompareOp::Eq, CompareOp::Ne])
}

fn string_field() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![Field::Id, Field::DisplayName, Field::Template])
}

fn bool_field() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![Field::Provisioned, Field::Simulated, Field::Enabled])
}

fn arb_ordered_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        arb_string().prop_map(Literal::String),
        arb_number().prop_map(Literal::Number)
    ]
}

fn arb_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![arb_ordered_literal(), any::<bool>().prop_map(Literal::Bool)]
}

/// Comparisons that satisfy the type rules, so `parse` accepts them.
pub fn arb_valid_leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (string_field(), arb_op(), arb_string()).prop_map(|(f, op, v)| cmp(
            f,
            op,
            Literal::String(v)
        )),
        (bool_field(), arb_eq_op(), any::<bool>()).prop_map(|(f, op, b)| cmp(
            f,
            op,
            Literal::Bool(b)
        )),
        (arb_property(), arb_op(), arb_ordered_literal()).prop_map(|(f, op, v)| cmp(f, op, v)),
        (arb_property(), arb_eq_op(), any::<bool>()).prop_map(|(f, op, b)| cmp(
            f,
            op,
            Literal::Bool(b)
        )),
        (
            string_field(),
            prop::collection::vec(arb_string().prop_map(Literal::String), 1..4)
        )
            .prop_map(|(field, values)| Expr::In { field, values }),
        (
            bool_field(),
            prop::collection::vec(any::<bool>().prop_map(Literal::Bool), 1..3)
        )
            .prop_map(|(field, values)| Expr::In { field, values }),
        (arb_property(), prop::collection::vec(arb_literal(), 1..4))
            .prop_map(|(field, values)| Expr::In { field, values }),
    ]
}

pub fn arb_tree(leaf: BoxedStrategy<Expr>) -> impl Strategy<Value = Expr> {
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
            inner.prop_map(not),
        ]
    })
}

pub fn arb_source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Devices),
        "dtmi:[a-z][a-z0-9_]{0,6}(:[A-Za-z0-9_]{1,6}){0,2}(;[0-9]{1,3})?"
            .prop_map(Source::Template),
    ]
}

pub fn arb_valid_filter() -> impl Strategy<Value = Filter> {
    (
        arb_source(),
        proptest::option::of(arb_tree(arb_valid_leaf().boxed())),
    )
        .prop_map(|(source, condition)| Filter { source, condition })
}

// ---------- strategies for SQL-vs-memory agreement ----------

/// Properties present (or deliberately absent) in the fixture.
pub fn fixture_property() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![
        "temp",
        "name",
        "flag",
        "mode",
        "missing",
        "Temp",
        "thermostat",
        "thermostat.temp",
        "thermostat.mode",
        "deep.nested",
        "nope.temp",
    ])
    .prop_map(prop)
}

fn fixture_string() -> impl Strategy<Value = Literal> {
    prop::sample::select(vec![
        "",
        "a",
        "abc",
        "Zeta",
        "zeta",
        "heat",
        "cool",
        "hot",
        "21.5",
        "dev-01",
        "dev-1",
        "dev-2",
        "Dev-15",
        "\u{e9} unicode",
        "\u{3a9}",
        "Thermostat A",
        "dtmi:contoso:Thermostat;1",
        "dtmi:contoso:Thermostat;2",
        "dtmi:m",
        "it's \"quoted\" \\ back",
        "what?",
        "t",
    ])
    .prop_map(s)
}

fn fixture_number() -> impl Strategy<Value = Literal> {
    prop::sample::select(vec![
        0.0,
        -0.0,
        -0.5,
        5.0,
        18.0,
        19.0,
        21.0,
        21.5,
        22.0,
        30.0,
        -3.0,
        1e300,
        9007199254740992.0,
        9007199254740994.0,
    ])
    .prop_map(num)
}

pub fn fixture_literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        fixture_string(),
        fixture_number(),
        any::<bool>().prop_map(Literal::Bool),
    ]
}

fn props(names: &[&'static str]) -> impl Strategy<Value = Field> + use<> {
    prop::sample::select(names.to_vec()).prop_map(prop)
}

fn any_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => fixture_property(),
        1 => prop::sample::select(vec![
            Field::Id, Field::DisplayName, Field::Template,
            Field::Provisioned, Field::Simulated, Field::Enabled,
        ]),
    ]
}

/// Any comparison at all, including ones the parser would reject (wrong
/// literal type, ordering on booleans, empty IN): SQL and memory must
/// still agree on them. Most pair a field with literals of the type it
/// usually holds, so that results are selective rather than empty.
pub fn fixture_leaf() -> impl Strategy<Value = Expr> {
    let numeric = props(&[
        "temp",
        "thermostat.temp",
        "Temp",
        "thermostat",
        "deep.nested",
    ]);
    let textual = props(&["name", "mode", "thermostat.mode", "temp"]);
    let system_text = prop::sample::select(vec![Field::Id, Field::DisplayName, Field::Template]);
    let system_bool =
        prop::sample::select(vec![Field::Provisioned, Field::Simulated, Field::Enabled]);
    prop_oneof![
        4 => (numeric, arb_op(), fixture_number()).prop_map(|(f, op, v)| cmp(f, op, v)),
        2 => (textual, arb_op(), fixture_string()).prop_map(|(f, op, v)| cmp(f, op, v)),
        2 => (props(&["flag", "missing"]), arb_op(), any::<bool>())
            .prop_map(|(f, op, b)| cmp(f, op, Literal::Bool(b))),
        2 => (system_text, arb_op(), fixture_string()).prop_map(|(f, op, v)| cmp(f, op, v)),
        2 => (system_bool, arb_op(), any::<bool>()).prop_map(|(f, op, b)| cmp(f, op, Literal::Bool(b))),
        2 => (any_field(), arb_op(), fixture_literal()).prop_map(|(f, op, v)| cmp(f, op, v)),
        1 => (any_field(), prop::collection::vec(fixture_literal(), 0..4))
            .prop_map(|(field, values)| Expr::In { field, values }),
    ]
}

pub fn fixture_filter() -> impl Strategy<Value = Filter> {
    let source = prop_oneof![
        3 => Just(Source::Devices),
        1 => prop::sample::select(vec![
            "dtmi:contoso:Thermostat;1", "dtmi:modelDefinition:dtdlv2", "dtmi:none;1",
        ])
        .prop_map(|t| Source::Template(t.to_string())),
    ];
    (
        source,
        proptest::option::weighted(0.9, arb_tree(fixture_leaf().boxed())),
    )
        .prop_map(|(source, condition)| Filter { source, condition })
}

// ---------- device fixture ----------

pub struct Device {
    pub id: &'static str,
    pub display_name: &'static str,
    pub template: Option<&'static str>,
    pub provisioned: bool,
    pub simulated: bool,
    pub enabled: bool,
    pub cloud: Value,
    pub reported: Value,
}

impl Device {
    pub fn view(&self) -> DeviceView<'_> {
        DeviceView {
            id: self.id,
            display_name: self.display_name,
            template: self.template,
            provisioned: self.provisioned,
            simulated: self.simulated,
            enabled: self.enabled,
            cloud_properties: &self.cloud,
            reported_properties: &self.reported,
        }
    }
}

const T1: Option<&str> = Some("dtmi:contoso:Thermostat;1");
const T2: Option<&str> = Some("dtmi:contoso:Thermostat;2");
const DTDL: Option<&str> = Some("dtmi:modelDefinition:dtdlv2");

#[rustfmt::skip]
pub fn devices() -> Vec<Device> {
    let d = |id, display_name, template, [provisioned, simulated, enabled]: [bool; 3], cloud, reported| Device {
        id, display_name, template, provisioned, simulated, enabled, cloud, reported,
    };
    vec![
        d("dev-01", "Thermostat A", T1, [true, false, true], json!({"temp": 21.5, "mode": "heat"}), json!({"flag": true})),
        d("dev-02", "Thermostat B", T1, [true, true, true], json!({}), json!({"temp": 19})),
        // wrong type and no template
        d("dev-03", "", None, [false, false, true], json!({}), json!({"temp": "hot"})),
        // a null cloud value falls back to the reported one
        d("dev-04", "Zeta", T2, [true, false, false], json!({"temp": null}), json!({"temp": 30})),
        // a cloud value of another type shadows the reported one
        d("dev-05", "zeta", T2, [false, true, true], json!({"temp": "21.5"}), json!({"temp": 21.5})),
        d("dev-06", "\u{e9} unicode", None, [true, true, false], json!({"thermostat": {"temp": 22, "mode": "cool"}}), json!({})),
        // component that is not an object in cloud, an object in reported
        d("dev-07", "seven", DTDL, [true, false, true], json!({"thermostat": 5}), json!({"thermostat": {"temp": 18}})),
        d("dev-08", "eight", T1, [false, false, false], json!({"flag": false}), json!({"flag": true})),
        d("dev-09", "nine", T1, [true, false, true], json!({"flag": "true"}), json!({})),
        d("dev-10", "ten", DTDL, [true, false, true], json!({}), json!({"temp": 1e300})),
        d("dev-11", "eleven", T1, [true, true, true], json!({}), json!({"temp": -0.5, "name": "abc"})),
        d("dev-12", "twelve", None, [false, false, true], json!({"name": ["a"]}), json!({"name": "abc"})),
        d("dev-13", "thirteen", T2, [true, false, true], json!({"name": {"x": 1}}), json!({"mode": "cool"})),
        // rounds to 9007199254740992 as a double
        d("dev-14", "fourteen", T1, [true, false, true], json!({"temp": 9007199254740993u64}), json!({})),
        d("Dev-15", "\u{3a9}", T2, [false, true, false], json!({"mode": "heat"}), json!({"temp": 21})),
        d("dev-16", "sixteen", T1, [true, false, true], json!({}), json!({"mode": "heat", "thermostat": {"mode": "heat", "temp": 21.5}})),
        // property names are case-sensitive
        d("dev-17", "seventeen", DTDL, [true, true, true], json!({"Temp": 5}), json!({})),
        d("dev-18", "eighteen", None, [true, false, true], json!({"name": ""}), json!({"temp": 0})),
        d("dev-19", "nineteen", T1, [false, false, true], json!({"name": "it's \"quoted\" \\ back"}), json!({"temp": -3})),
        d("dev-20", "twenty", DTDL, [false, false, false], json!({"temp": -3, "flag": null}), json!({"flag": false})),
        d("dev-21", "twenty-one", T1, [true, false, true], json!({"deep": {"nested": {"x": 1}}}), json!({"deep": {"nested": 1}})),
        d("dev-22", "twenty-two", T1, [true, false, true], json!({"temp": null}), json!({"temp": null})),
    ]
}

/// Filters whose SQL and in-memory results must agree.
pub const FILTERS: &[&str] = &[
    "SELECT * FROM devices",
    "SELECT * FROM dtmi:contoso:Thermostat;1",
    "SELECT * FROM dtmi:contoso:Thermostat;1 WHERE temp > 20",
    "SELECT * FROM devices WHERE $template = \"dtmi:modelDefinition:dtdlv2\" AND $provisioned = true",
    "SELECT * FROM devices WHERE $template = \"dtmi:contoso:Thermostat;1\"",
    "SELECT * FROM devices WHERE $template != 'dtmi:contoso:Thermostat;1'",
    "SELECT * FROM devices WHERE NOT $template = 'dtmi:contoso:Thermostat;1'",
    "SELECT * FROM devices WHERE $template IN ['dtmi:contoso:Thermostat;1', 'dtmi:contoso:Thermostat;2']",
    "SELECT * FROM devices WHERE $id = 'dev-01'",
    "SELECT * FROM devices WHERE $id < 'dev-10'",
    "SELECT * FROM devices WHERE $id >= 'dev-1' AND $id <= 'dev-15'",
    "SELECT * FROM devices WHERE $displayName > 'Z'",
    "SELECT * FROM devices WHERE $displayName = ''",
    "SELECT * FROM devices WHERE $provisioned = true",
    "SELECT * FROM devices WHERE $simulated != true",
    "SELECT * FROM devices WHERE $enabled <> false AND NOT $simulated = true",
    "SELECT * FROM devices WHERE $enabled IN [true, false]",
    "SELECT * FROM devices WHERE temp > 20",
    "SELECT * FROM devices WHERE temp <= 21.5",
    "SELECT * FROM devices WHERE temp = 21.5",
    "SELECT * FROM devices WHERE NOT temp = 21.5",
    "SELECT * FROM devices WHERE temp != 21.5",
    "SELECT * FROM devices WHERE temp = 'hot' OR temp = \"21.5\"",
    "SELECT * FROM devices WHERE temp < 'z'",
    "SELECT * FROM devices WHERE temp = 9007199254740992",
    "SELECT * FROM devices WHERE temp >= 1e300",
    "SELECT * FROM devices WHERE temp < 0",
    "SELECT * FROM devices WHERE temp = -0.5",
    "SELECT * FROM devices WHERE temp = -0",
    "SELECT * FROM devices WHERE thermostat.temp > 20",
    "SELECT * FROM devices WHERE thermostat.temp < 20",
    "SELECT * FROM devices WHERE thermostat.mode = 'cool' OR mode = 'heat'",
    "SELECT * FROM devices WHERE thermostat = 5",
    "SELECT * FROM devices WHERE flag = true",
    "SELECT * FROM devices WHERE flag != true",
    "SELECT * FROM devices WHERE flag = false",
    "SELECT * FROM devices WHERE NOT flag = true",
    "SELECT * FROM devices WHERE flag IN [true, 'true']",
    "SELECT * FROM devices WHERE name = 'abc'",
    "SELECT * FROM devices WHERE name = ''",
    "SELECT * FROM devices WHERE name = 'it\\'s \"quoted\" \\\\ back'",
    "SELECT * FROM devices WHERE name IN ['abc', 1, false]",
    "SELECT * FROM devices WHERE Temp = 5",
    "SELECT * FROM devices WHERE missing = 1",
    "SELECT * FROM devices WHERE NOT missing = 1",
    "SELECT * FROM devices WHERE NOT (missing = 1 OR temp > 20)",
    "SELECT * FROM devices WHERE deep.nested = 1",
    "SELECT * FROM devices WHERE NOT NOT (temp > 0 AND temp < 100) OR $displayName = 'what?'",
    "select * from DEVICES where $DisplayName >= 'a' and not ($provisioned = false or mode in ['cool'])",
];
