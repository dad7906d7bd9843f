//! Parser, type-rule and printer unit tests.

mod common;

use common::*;
use flotilla_filter::{CompareOp, Expr, Field, Filter, FilterError, Literal, Source, parse};

const P: &str = "SELECT * FROM devices WHERE ";

fn cond(c: &str) -> Expr {
    let f = parse(&format!("{P}{c}")).unwrap_or_else(|e| panic!("{c}: {e}"));
    assert_eq!(f.source, Source::Devices);
    f.condition.expect("has a WHERE clause")
}

fn err(input: &str) -> FilterError {
    match parse(input) {
        Ok(f) => panic!("{input:?} unexpectedly parsed as {f:?}"),
        Err(e) => e,
    }
}

fn a1() -> Expr {
    cmp(prop("a"), CompareOp::Eq, num(1.0))
}
fn b2() -> Expr {
    cmp(prop("b"), CompareOp::Eq, num(2.0))
}
fn c3() -> Expr {
    cmp(prop("c"), CompareOp::Eq, num(3.0))
}

#[test]
fn every_operator() {
    for (text, op) in [
        ("=", CompareOp::Eq),
        ("!=", CompareOp::Ne),
        ("<>", CompareOp::Ne),
        ("<", CompareOp::Lt),
        ("<=", CompareOp::Le),
        (">", CompareOp::Gt),
        (">=", CompareOp::Ge),
    ] {
        assert_eq!(
            cond(&format!("temp {text} 5")),
            cmp(prop("temp"), op, num(5.0)),
            "{text}"
        );
        // no whitespace needed around operators
        assert_eq!(
            cond(&format!("temp{text}5")),
            cmp(prop("temp"), op, num(5.0)),
            "{text}"
        );
    }
}

#[test]
fn in_lists() {
    assert_eq!(
        cond("a IN [1, \"x\", true]"),
        Expr::In {
            field: prop("a"),
            values: vec![num(1.0), s("x"), Literal::Bool(true)]
        }
    );
    assert_eq!(
        cond("a in['x']"),
        Expr::In {
            field: prop("a"),
            values: vec![s("x")]
        }
    );
    assert_eq!(
        cond("$enabled IN [true, false]"),
        Expr::In {
            field: Field::Enabled,
            values: vec![Literal::Bool(true), Literal::Bool(false)]
        }
    );
    assert_eq!(
        cond("$id IN ['a','b']"),
        Expr::In {
            field: Field::Id,
            values: vec![s("a"), s("b")]
        }
    );
}

#[test]
fn not_and_parentheses() {
    assert_eq!(cond("NOT a = 1"), not(a1()));
    assert_eq!(cond("NOT NOT a = 1"), not(not(a1())));
    assert_eq!(cond("NOT (a = 1 OR b = 2)"), not(or(a1(), b2())));
    assert_eq!(
        cond("(a = 1 OR b = 2) AND c = 3"),
        and(or(a1(), b2()), c3())
    );
    assert_eq!(cond("((a = 1))"), a1());
    assert_eq!(
        cond("a = 1 AND (b = 2 OR c = 3)"),
        and(a1(), or(b2(), c3()))
    );
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(cond("a = 1 OR b = 2 AND c = 3"), or(a1(), and(b2(), c3())));
    assert_eq!(cond("a = 1 AND b = 2 OR c = 3"), or(and(a1(), b2()), c3()));
    assert_eq!(cond("NOT a = 1 AND b = 2"), and(not(a1()), b2()));
    assert_eq!(cond("a = 1 OR NOT b = 2"), or(a1(), not(b2())));
    assert_eq!(cond("a = 1 OR b = 2 OR c = 3"), or(or(a1(), b2()), c3()));
    assert_eq!(
        cond("a = 1 AND b = 2 AND c = 3"),
        and(and(a1(), b2()), c3())
    );
}

#[test]
fn keywords_and_system_fields_are_case_insensitive() {
    let f =
        parse("select * FROM Devices wHeRe not a = 1 and b = 2 Or $PROVISIONED = TRUE").unwrap();
    assert_eq!(
        f.condition.unwrap(),
        or(
            and(not(a1()), b2()),
            cmp(Field::Provisioned, CompareOp::Eq, Literal::Bool(true))
        )
    );
    assert_eq!(
        cond("a In [False]"),
        Expr::In {
            field: prop("a"),
            values: vec![Literal::Bool(false)]
        }
    );
    for (text, field) in [
        ("$id", Field::Id),
        ("$ID", Field::Id),
        ("$displayName", Field::DisplayName),
        ("$displayname", Field::DisplayName),
        ("$template", Field::Template),
        ("$Template", Field::Template),
    ] {
        assert_eq!(
            cond(&format!("{text} = 'x'")),
            cmp(field, CompareOp::Eq, s("x")),
            "{text}"
        );
    }
    for (text, field) in [
        ("$provisioned", Field::Provisioned),
        ("$simulated", Field::Simulated),
        ("$ENABLED", Field::Enabled),
    ] {
        assert_eq!(
            cond(&format!("{text} != false")),
            cmp(field, CompareOp::Ne, Literal::Bool(false)),
            "{text}"
        );
    }
}

#[test]
fn property_names_are_case_sensitive_and_may_have_a_component() {
    assert_eq!(cond("Temp = 1"), cmp(prop("Temp"), CompareOp::Eq, num(1.0)));
    assert_eq!(
        cond("thermostat.targetTemperature > 20"),
        cmp(
            prop("thermostat.targetTemperature"),
            CompareOp::Gt,
            num(20.0)
        )
    );
    assert_eq!(
        cond("c . p_2 = 1"),
        cmp(prop("c.p_2"), CompareOp::Eq, num(1.0))
    );
    // names that merely contain keywords, or are `devices`/`dtmi`, are fine
    assert_eq!(
        cond("ORDER = 1"),
        cmp(prop("ORDER"), CompareOp::Eq, num(1.0))
    );
    assert_eq!(
        cond("devices = 1"),
        cmp(prop("devices"), CompareOp::Eq, num(1.0))
    );
    assert_eq!(cond("dtmi = 1"), cmp(prop("dtmi"), CompareOp::Eq, num(1.0)));
    let long = "x".repeat(64);
    assert_eq!(
        cond(&format!("{long} = 1")),
        cmp(prop(&long), CompareOp::Eq, num(1.0))
    );
}

#[test]
fn string_literals_in_both_quote_styles() {
    for (text, value) in [
        (r#""plain""#, "plain"),
        ("'plain'", "plain"),
        (r#""say \"hi\"""#, "say \"hi\""),
        (r#"'it\'s'"#, "it's"),
        (r#""it's""#, "it's"),
        (r#"'a "b"'"#, "a \"b\""),
        (r#""back\\slash""#, "back\\slash"),
        (r#"'\"\'\\'"#, "\"'\\"),
        ("''", ""),
        ("'h\u{e9}llo \u{1f600}'", "h\u{e9}llo \u{1f600}"),
    ] {
        assert_eq!(
            cond(&format!("a = {text}")),
            cmp(prop("a"), CompareOp::Eq, s(value)),
            "{text}"
        );
    }
}

#[test]
fn number_literals() {
    for (text, value) in [
        ("0", 0.0),
        ("42", 42.0),
        ("-5", -5.0),
        ("0.25", 0.25),
        ("-0.5", -0.5),
        ("1e3", 1000.0),
        ("1.5E-3", 0.0015),
        ("-2.5e+10", -2.5e10),
        ("1e300", 1e300),
        ("0.1", 0.1),
    ] {
        assert_eq!(
            cond(&format!("a = {text}")),
            cmp(prop("a"), CompareOp::Eq, num(value)),
            "{text}"
        );
    }
}

#[test]
fn sources() {
    assert_eq!(
        parse("SELECT * FROM devices").unwrap(),
        Filter {
            source: Source::Devices,
            condition: None
        }
    );
    assert_eq!(
        parse("  SELECT  *  FROM  DEVICES  ").unwrap().source,
        Source::Devices
    );
    assert_eq!(
        parse("SELECT * FROM dtmi:contoso:Thermostat;1").unwrap(),
        Filter {
            source: Source::Template("dtmi:contoso:Thermostat;1".into()),
            condition: None
        }
    );
    let f = parse("SELECT * FROM dtmi:com:example:Sensor_2 WHERE temp > 1").unwrap();
    assert_eq!(
        f.source,
        Source::Template("dtmi:com:example:Sensor_2".into())
    );
    assert_eq!(
        f.condition,
        Some(cmp(prop("temp"), CompareOp::Gt, num(1.0)))
    );
}

#[test]
fn real_iot_central_examples() {
    let f = parse(r#"SELECT * FROM devices WHERE $template = "dtmi:modelDefinition:dtdlv2" AND $provisioned = true"#)
        .unwrap();
    assert_eq!(
        f.condition.unwrap(),
        and(
            cmp(
                Field::Template,
                CompareOp::Eq,
                s("dtmi:modelDefinition:dtdlv2")
            ),
            cmp(Field::Provisioned, CompareOp::Eq, Literal::Bool(true))
        )
    );
    let f =
        parse(r#"SELECT * FROM devices WHERE $template = "dtmi:contoso:mythermostattemplate;1""#)
            .unwrap();
    assert_eq!(
        f.condition.unwrap(),
        cmp(
            Field::Template,
            CompareOp::Eq,
            s("dtmi:contoso:mythermostattemplate;1")
        )
    );
}

/// (input, exact character position, fragment of the message)
const BAD: &[(&str, usize, &str)] = &[
    ("", 0, "expected SELECT, found end of input"),
    ("   ", 3, "expected SELECT, found end of input"),
    ("SELECT devices", 7, "expected \"*\", found \"devices\""),
    ("SELECT * FORM devices", 9, "expected FROM, found \"FORM\""),
    (
        "SELECT * FROM things",
        14,
        "expected \"devices\" or a DTMI, found \"things\"",
    ),
    (
        "SELECT * FROM devices garbage",
        22,
        "expected WHERE or end of input, found \"garbage\"",
    ),
    ("SELECT * FROM devices WHERE", 27, "expected a condition"),
    (
        "SELECT * FROM dtmi:foo::bar;1",
        23,
        "expected a DTMI segment",
    ),
    (
        "SELECT * FROM dtmi:foo;",
        23,
        "expected a DTMI version number",
    ),
    (
        "SELECT * FROM devices WHERE temp ~ 5",
        33,
        "expected a comparison operator (=, !=, <, <=, >, >=, IN), found \"~\"",
    ),
    (
        "SELECT * FROM devices WHERE temp",
        32,
        "expected a comparison operator (=, !=, <, <=, >, >=, IN), found end of input",
    ),
    (
        "SELECT * FROM devices WHERE $foo = 1",
        28,
        "expected a system field ($id, $displayName, $template, $provisioned, $simulated, $enabled), found \"$foo\"",
    ),
    (
        "SELECT * FROM devices WHERE $provisioned = \"yes\"",
        43,
        "expected true or false for $provisioned, found \"yes\"",
    ),
    (
        "SELECT * FROM devices WHERE $provisioned < true",
        41,
        "expected =, !=, <> or IN after $provisioned, found \"<\"",
    ),
    (
        "SELECT * FROM devices WHERE $simulated IN [true, 1]",
        49,
        "expected true or false for $simulated",
    ),
    (
        "SELECT * FROM devices WHERE $id = 5",
        34,
        "expected a quoted string for $id, found \"5\"",
    ),
    (
        "SELECT * FROM devices WHERE $template = true",
        40,
        "expected a quoted string for $template",
    ),
    (
        "SELECT * FROM devices WHERE x < true",
        30,
        "expected =, !=, <> or IN before a boolean value, found \"<\"",
    ),
    (
        "SELECT * FROM devices WHERE a = 1 b = 2",
        34,
        "expected AND, OR or end of input, found \"b\"",
    ),
    (
        "SELECT * FROM devices WHERE a = 1)",
        33,
        "expected AND, OR or end of input, found \")\"",
    ),
    (
        "SELECT * FROM devices WHERE (a = 1",
        34,
        "expected AND, OR or \")\", found end of input",
    ),
    (
        "SELECT * FROM devices WHERE a = \"abc",
        32,
        "unterminated string: expected a closing \", found end of input",
    ),
    (
        "SELECT * FROM devices WHERE a = 'a\\nb'",
        34,
        "expected an escape sequence",
    ),
    (
        "SELECT * FROM devices WHERE a = 1.",
        34,
        "expected a digit after the decimal point, found end of input",
    ),
    (
        "SELECT * FROM devices WHERE a = 1e",
        34,
        "expected a digit in the exponent",
    ),
    (
        "SELECT * FROM devices WHERE a = 1e999",
        32,
        "within the range",
    ),
    (
        "SELECT * FROM devices WHERE a = -x",
        32,
        "expected a value (a string, a number, true or false), found \"-\"",
    ),
    ("SELECT * FROM devices WHERE a = b", 32, "expected a value"),
    (
        "SELECT * FROM devices WHERE a IN []",
        34,
        "expected a value (a string, a number, true or false), found \"]\"",
    ),
    (
        "SELECT * FROM devices WHERE a IN [1, 2",
        38,
        "expected \",\" or \"]\", found end of input",
    ),
    ("SELECT * FROM devices WHERE a IN (1)", 33, "expected \"[\""),
    (
        "SELECT * FROM devices WHERE AND = 1",
        28,
        "expected a condition (a $field, a property name, NOT or \"(\"), found \"AND\"",
    ),
    ("SELECT * FROM devices WHERE true = 1", 28, "found \"true\""),
    (
        "SELECT * FROM devices WHERE c. = 1",
        31,
        "expected a property name after \".\", found \"=\"",
    ),
    (
        "SELECT * FROM devices WHERE c.in = 1",
        30,
        "expected a property name after \".\", found \"in\"",
    ),
    (
        "SELECT * FROM devices WHERE NOT",
        31,
        "expected a condition",
    ),
    ("SELECT * FROM devices WHERE _a = 1", 28, "found \"_\""),
    // positions count characters, not bytes
    (
        "SELECT * FROM devices WHERE $displayName = \"h\u{e9}llo\" ~",
        51,
        "found \"~\"",
    ),
];

#[test]
fn error_positions() {
    for &(input, position, message) in BAD {
        let e = err(input);
        assert_eq!(e.position, position, "position for {input:?}: {e}");
        assert!(
            e.message.contains(message),
            "message for {input:?}: {:?} lacks {message:?}",
            e.message
        );
        assert_eq!(
            e.to_string(),
            format!("invalid filter at position {position}: {}", e.message)
        );
    }
}

#[test]
fn overlong_names_are_rejected_at_the_name() {
    let long = "x".repeat(65);
    let e = err(&format!("{P}{long} = 1"));
    assert_eq!(e.position, 28);
    assert!(e.message.contains("at most 64 characters"), "{e}");
    let e = err(&format!("{P}c.{long} = 1"));
    assert_eq!(e.position, 30);
}

#[test]
fn canonical_printing() {
    for (input, printed) in [
        ("select * from DEVICES", "SELECT * FROM devices"),
        (
            "SELECT * FROM dtmi:a:b;3 where x=1",
            "SELECT * FROM dtmi:a:b;3 WHERE x = 1",
        ),
        (
            "SELECT * FROM devices WHERE a=1 or b=2 and c=3",
            "SELECT * FROM devices WHERE a = 1 OR b = 2 AND c = 3",
        ),
        (
            "SELECT * FROM devices WHERE (a=1 or b=2) and c=3",
            "SELECT * FROM devices WHERE (a = 1 OR b = 2) AND c = 3",
        ),
        (
            "SELECT * FROM devices WHERE ((a=1) or (b=2)) or c=3",
            "SELECT * FROM devices WHERE a = 1 OR b = 2 OR c = 3",
        ),
        (
            "SELECT * FROM devices WHERE a=1 or (b=2 or c=3)",
            "SELECT * FROM devices WHERE a = 1 OR (b = 2 OR c = 3)",
        ),
        (
            "SELECT * FROM devices WHERE a=1 and (b=2 and c=3)",
            "SELECT * FROM devices WHERE a = 1 AND (b = 2 AND c = 3)",
        ),
        (
            "SELECT * FROM devices WHERE not (a=1 and b=2)",
            "SELECT * FROM devices WHERE NOT (a = 1 AND b = 2)",
        ),
        (
            "SELECT * FROM devices WHERE (not a=1) and b=2",
            "SELECT * FROM devices WHERE NOT a = 1 AND b = 2",
        ),
        (
            "SELECT * FROM devices WHERE not not (a<>1)",
            "SELECT * FROM devices WHERE NOT NOT a != 1",
        ),
        (
            "SELECT * FROM devices WHERE $DISPLAYNAME in ['x', \"it's\"]",
            "SELECT * FROM devices WHERE $displayName IN [\"x\", \"it's\"]",
        ),
        (
            r#"SELECT * FROM devices WHERE a = 'q"\\'"#,
            r#"SELECT * FROM devices WHERE a = "q\"\\""#,
        ),
        (
            "SELECT * FROM devices WHERE a = 1.0 and b = 1e300 and c = -0.5 and d = 1e-7 and e = 2.5E+3",
            "SELECT * FROM devices WHERE a = 1 AND b = 1e300 AND c = -0.5 AND d = 1e-7 AND e = 2500",
        ),
        (
            "SELECT * FROM devices WHERE c.p_1 <= 'x'",
            "SELECT * FROM devices WHERE c.p_1 <= \"x\"",
        ),
    ] {
        let f = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(f.to_string(), printed, "{input}");
        assert_eq!(parse(printed).unwrap(), f, "{printed}");
    }
}

#[test]
fn printing_hand_built_trees_keeps_their_shape() {
    let cases = [
        or(a1(), or(b2(), c3())),
        and(a1(), and(b2(), c3())),
        not(or(a1(), b2())),
        and(not(and(a1(), b2())), or(c3(), not(not(a1())))),
        cmp(prop("x"), CompareOp::Eq, num(f64::MAX)),
        cmp(prop("x"), CompareOp::Lt, num(5e-324)),
        cmp(prop("x"), CompareOp::Eq, num(-1e300)),
    ];
    for e in cases {
        let f = Filter {
            source: Source::Devices,
            condition: Some(e),
        };
        assert_eq!(parse(&f.to_string()).unwrap(), f, "{f}");
    }
    assert_eq!(num(-1e300).to_string(), "-1e300");
    assert_eq!(not(or(a1(), b2())).to_string(), "NOT (a = 1 OR b = 2)");
}

#[test]
fn from_str_matches_parse() {
    let f: Filter = "SELECT * FROM devices WHERE a = 1".parse().unwrap();
    assert_eq!(f.condition, Some(a1()));
    assert!("nonsense".parse::<Filter>().is_err());
}

#[test]
fn nesting_and_size_are_bounded() {
    use flotilla_filter::{MAX_NESTING, MAX_VALUES};
    let nested = |n: usize| format!("{P}{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(parse(&nested(MAX_NESTING)).is_ok());
    let e = err(&nested(MAX_NESTING + 1));
    assert_eq!(e.position, 28 + MAX_NESTING);
    assert!(e.message.contains("nested"), "{e}");
    let nots = |n: usize| format!("{P}{}a = 1", "NOT ".repeat(n));
    assert!(parse(&nots(MAX_NESTING)).is_ok());
    assert_eq!(err(&nots(MAX_NESTING + 1)).position, 28 + 4 * MAX_NESTING);

    let list = |n: usize| format!("{P}a IN [{}]", vec!["1"; n].join(","));
    assert!(parse(&list(MAX_VALUES)).is_ok());
    let e = err(&list(MAX_VALUES + 1));
    assert_eq!(e.position, 28 + "a IN [".len() + 2 * MAX_VALUES);
    assert!(e.message.contains("at most 1000"), "{e}");
    // a long flat chain is fine and keeps its left-leaning shape
    let chain = vec!["a = 1"; 500].join(" OR ");
    let f = parse(&format!("{P}{chain}")).unwrap();
    assert_eq!(parse(&f.to_string()).unwrap(), f);
}
