//! The SQL a filter compiles to must select exactly the devices `Filter::matches`
//! accepts, on real SQLite and PostgreSQL databases.

// The filter crate's fixture (devices, filters and their strategies), shared rather than copied.
#[path = "../../filter/tests/common/mod.rs"]
mod common;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use flotilla_filter::{Filter, parse};
use flotilla_store::Dialect;
use flotilla_store::filter_sql::{SqlCondition, SqlParam, condition};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, Row, SqlitePool};
use tokio::runtime::Runtime;

type Ids = BTreeSet<String>;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn expected(filter: &Filter, devices: &[Device]) -> Ids {
    devices
        .iter()
        .filter(|d| filter.matches(&d.view()))
        .map(|d| d.id.to_string())
        .collect()
}

/// Placeholders are the only `?` characters, and user text never appears:
/// every word of the SQL comes from the translator's own fixed vocabulary.
fn check_shape(cond: &SqlCondition) {
    const VOCABULARY: &[&str] = &[
        "COALESCE",
        "NULLIF",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "FALSE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "CAST",
        "AS",
        "REAL",
        "COLLATE",
        "C",
        "json_type",
        "json_extract",
        "json_each",
        "jsonb_array_elements_text",
        "SELECT",
        "FROM",
        "value",
        "jsonb",
        "jsonb_typeof",
        "string_to_array",
        "float8",
        "cloud_properties",
        "reported_properties",
        "id",
        "display_name",
        "template",
        "provisioned",
        "simulated",
        "enabled",
        "null",
        "text",
        "integer",
        "real",
        "true",
        "false",
        "string",
        "number",
        "boolean",
        "1",
        "0",
    ];
    assert_eq!(
        cond.sql.matches('?').count(),
        cond.params.len(),
        "{}",
        cond.sql
    );
    for word in cond
        .sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
    {
        assert!(
            word.is_empty() || VOCABULARY.contains(&word),
            "unexpected {word:?} in {}",
            cond.sql
        );
    }
}

// ---------- SQLite ----------

async fn sqlite_db(devices: &[Device]) -> SqlitePool {
    // One connection that never expires: each in-memory database is private
    // to its connection.
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE devices (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, template TEXT NULL,
         enabled INTEGER NOT NULL, provisioned INTEGER NOT NULL, simulated INTEGER NOT NULL,
         cloud_properties TEXT NOT NULL, reported_properties TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for d in devices {
        sqlx::query("INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(d.id)
            .bind(d.display_name)
            .bind(d.template)
            .bind(i64::from(d.enabled))
            .bind(i64::from(d.provisioned))
            .bind(i64::from(d.simulated))
            .bind(d.cloud.to_string())
            .bind(d.reported.to_string())
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

async fn sqlite_ids(pool: &SqlitePool, filter: &Filter) -> Result<Ids, String> {
    let cond = condition(filter, Dialect::Sqlite);
    check_shape(&cond);
    let sql = format!("SELECT id FROM devices WHERE {}", cond.sql);
    let mut q = sqlx::query(&sql);
    for p in cond.params {
        q = match p {
            SqlParam::Text(t) => q.bind(t),
            SqlParam::Real(r) => q.bind(r),
            SqlParam::Bool(b) => q.bind(i64::from(b)),
        };
    }
    let rows = q
        .fetch_all(pool)
        .await
        .map_err(|e| format!("{filter}\n{sql}\n{e}"))?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

// ---------- PostgreSQL ----------

fn postgres_url() -> String {
    std::env::var("FLOTILLA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema name no concurrent test run will pick.
fn unique_schema() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "flotilla_filter_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn postgres_db(schema: &str, devices: &[Device]) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&postgres_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is required: {e}", postgres_url()));
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&pool)
        .await
        .unwrap();
    // A linguistic collation (where 'eight' < 'Z') on the text columns proves
    // the translation forces byte order instead of trusting the default.
    let icu: Option<String> =
        sqlx::query_scalar("SELECT collname::text FROM pg_collation WHERE collname = 'und-x-icu'")
            .fetch_optional(&pool)
            .await
            .unwrap();
    let collate = icu.map(|_| " COLLATE \"und-x-icu\"").unwrap_or_default();
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".devices (id TEXT{collate} PRIMARY KEY, display_name TEXT{collate} NOT NULL,
         template TEXT{collate} NULL, enabled BOOLEAN NOT NULL, provisioned BOOLEAN NOT NULL,
         simulated BOOLEAN NOT NULL, cloud_properties TEXT NOT NULL, reported_properties TEXT NOT NULL)"
    ))
    .execute(&pool)
    .await
    .unwrap();
    for d in devices {
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".devices VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(d.id)
        .bind(d.display_name)
        .bind(d.template)
        .bind(d.enabled)
        .bind(d.provisioned)
        .bind(d.simulated)
        .bind(d.cloud.to_string())
        .bind(d.reported.to_string())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool
}

async fn postgres_ids(pool: &PgPool, schema: &str, filter: &Filter) -> Result<Ids, String> {
    let cond = condition(filter, Dialect::Postgres);
    check_shape(&cond);
    let sql = format!(
        "SELECT id FROM \"{schema}\".devices WHERE {}",
        Dialect::Postgres.placeholders(&cond.sql)
    );
    let mut q = sqlx::query(&sql);
    for p in cond.params {
        q = match p {
            SqlParam::Text(t) => q.bind(t),
            SqlParam::Real(r) => q.bind(r),
            SqlParam::Bool(b) => q.bind(b),
        };
    }
    let rows = q
        .fetch_all(pool)
        .await
        .map_err(|e| format!("{filter}\n{sql}\n{e}"))?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

// ---------- the checks, shared by both databases ----------

fn check_listed_filters(
    sql_ids: impl Fn(&Filter) -> Result<Ids, String>,
    devices: &[Device],
) -> Result<(), String> {
    let mut distinct_results = BTreeSet::new();
    for text in FILTERS {
        let filter = parse(text).map_err(|e| format!("{text}: {e}"))?;
        let want = expected(&filter, devices);
        let got = sql_ids(&filter)?;
        if got != want {
            return Err(format!("{text}\n  sql:    {got:?}\n  memory: {want:?}"));
        }
        distinct_results.insert(want);
    }
    // The fixture must actually discriminate between the filters.
    if distinct_results.len() < FILTERS.len() * 2 / 3 {
        return Err(format!(
            "only {} distinct result sets",
            distinct_results.len()
        ));
    }
    Ok(())
}

fn check_random_filters(
    cases: u32,
    sql_ids: impl Fn(&Filter) -> Result<Ids, String>,
    devices: &[Device],
) -> Result<(), String> {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    // Count results that are neither empty nor everything, to be sure the
    // generated filters exercise the data rather than trivially agreeing.
    let interesting = Cell::new(0u32);
    runner
        .run(&fixture_filter(), |filter| {
            let want = expected(&filter, devices);
            let got = sql_ids(&filter).map_err(TestCaseError::fail)?;
            if got != want {
                return Err(TestCaseError::fail(format!(
                    "{filter:?}\n  sql:    {got:?}\n  memory: {want:?}"
                )));
            }
            if !want.is_empty() && want.len() < devices.len() {
                interesting.set(interesting.get() + 1);
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    if interesting.get() < cases / 5 {
        return Err(format!(
            "only {} of {cases} random filters were selective",
            interesting.get()
        ));
    }
    Ok(())
}

/// Hand-checked answers, so SQL and memory cannot agree on a wrong result.
fn check_known_answers(
    sql_ids: impl Fn(&Filter) -> Result<Ids, String>,
    devices: &[Device],
) -> Result<(), String> {
    let known: &[(&str, &[&str])] = &[
        (
            "temp > 20",
            &["dev-01", "dev-04", "dev-10", "dev-14", "Dev-15"],
        ),
        ("thermostat.temp > 0", &["dev-06", "dev-07", "dev-16"]),
        (
            "NOT flag = true",
            &[
                "dev-02", "dev-03", "dev-04", "dev-05", "dev-06", "dev-07", "dev-08", "dev-09",
                "dev-10", "dev-11", "dev-12", "dev-13", "dev-14", "Dev-15", "dev-16", "dev-17",
                "dev-18", "dev-19", "dev-20", "dev-21", "dev-22",
            ],
        ),
        ("flag = false", &["dev-08", "dev-20"]),
        ("name = 'abc'", &["dev-11"]),
        ("temp = 9007199254740992", &["dev-14"]),
        (
            "$template != 'dtmi:contoso:Thermostat;1' AND $template < 'dtmi:m'",
            &["dev-04", "dev-05", "dev-13", "Dev-15"],
        ),
        (
            "$displayName > 'Z'",
            &[
                "dev-05", "dev-06", "dev-17", "dev-18", "dev-19", "dev-20", "dev-21", "dev-22",
                "dev-04", "Dev-15", "dev-07", "dev-08", "dev-09", "dev-10", "dev-11", "dev-12",
                "dev-13", "dev-14", "dev-16",
            ],
        ),
    ];
    for (cond_text, ids) in known {
        let filter = parse(&format!("SELECT * FROM devices WHERE {cond_text}"))
            .map_err(|e| e.to_string())?;
        let want: Ids = ids.iter().map(|s| s.to_string()).collect();
        let memory = expected(&filter, devices);
        let sql = sql_ids(&filter)?;
        if memory != want || sql != want {
            return Err(format!(
                "{cond_text}\n  want:   {want:?}\n  memory: {memory:?}\n  sql:    {sql:?}"
            ));
        }
    }
    Ok(())
}

#[test]
fn sqlite_agrees_with_in_memory_evaluation() {
    let rt = runtime();
    let devices = devices();
    let pool = rt.block_on(sqlite_db(&devices));
    let run = |f: &Filter| rt.block_on(sqlite_ids(&pool, f));
    check_known_answers(run, &devices).unwrap();
    check_listed_filters(run, &devices).unwrap();
    check_random_filters(400, run, &devices).unwrap();
}

#[test]
fn postgres_agrees_with_in_memory_evaluation() {
    let rt = runtime();
    let devices = devices();
    let schema = unique_schema();
    let pool = rt.block_on(postgres_db(&schema, &devices));
    let run = |f: &Filter| rt.block_on(postgres_ids(&pool, &schema, f));
    // Catch failures (including panics) first so the schema is always dropped.
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        check_known_answers(run, &devices)
            .and_then(|()| check_listed_filters(run, &devices))
            .and_then(|()| check_random_filters(200, run, &devices))
    }));
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    match outcome {
        Ok(result) => result.unwrap(),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[test]
fn no_condition_is_always_true() {
    let f = parse("SELECT * FROM devices").unwrap();
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let c = condition(&f, dialect);
        assert_eq!(c.sql, "1=1");
        assert!(c.params.is_empty());
    }
    let f = parse("SELECT * FROM dtmi:contoso:Thermostat;1").unwrap();
    let c = condition(&f, Dialect::Sqlite);
    assert_eq!(
        c.params,
        vec![SqlParam::Text("dtmi:contoso:Thermostat;1".into())]
    );
}

#[test]
fn user_text_is_always_bound() {
    let f = parse(r#"SELECT * FROM devices WHERE $id = "x'); DROP TABLE devices; --?" OR name IN ['what?', "?"]"#)
        .unwrap();
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let c = condition(&f, dialect);
        check_shape(&c);
        assert!(!c.sql.contains("DROP"), "{}", c.sql);
        assert!(
            c.params
                .contains(&SqlParam::Text("x'); DROP TABLE devices; --?".into()))
        );
    }
    let c = condition(
        &parse("SELECT * FROM devices WHERE a = 1 AND b = 'x'").unwrap(),
        Dialect::Postgres,
    );
    let numbered = Dialect::Postgres.placeholders(&c.sql);
    assert!(!numbered.contains('?'));
    assert!(
        numbered.contains("$1") && numbered.contains(&format!("${}", c.params.len())),
        "{numbered}"
    );
}

/// Filters as large as the parser accepts (`MAX_VALUES` literals, in one IN list or in a chain
/// of comparisons) evaluate on both databases, and agree with the in-memory evaluation: SQLite
/// refuses expressions nested 1,000 deep, and a list must not need a parameter per value.
#[test]
fn filters_at_the_size_limit_evaluate_on_both_databases() {
    let n = flotilla_filter::MAX_VALUES;
    let strings = |prefix: &str| {
        (0..n)
            .map(|i| format!("\"{prefix}{i:02}\""))
            .collect::<Vec<_>>()
    };
    let numbers: Vec<String> = (0..n).map(|i| format!("{}", i as f64 - 3.0)).collect();
    let mixed: Vec<String> = (0..n)
        .map(|i| match i % 3 {
            0 => format!("\"{}\"", ["heat", "cool", "abc"][i % 9 / 3]),
            1 => format!("{}", i as f64 / 2.0 - 3.0),
            _ => (i % 2 == 0).to_string(),
        })
        .collect();
    let conditions = [
        format!("$id IN [{}]", strings("dev-").join(", ")),
        format!("$provisioned IN [{}]", vec!["false"; n].join(", ")),
        format!("name IN [{}]", strings("ab").join(", ")),
        format!("temp IN [{}]", numbers.join(", ")),
        format!("mode IN [{}]", mixed.join(", ")),
        format!("flag IN [{}]", mixed.join(", ")),
        strings("dev-")
            .iter()
            .map(|id| format!("$id = {id}"))
            .collect::<Vec<_>>()
            .join(" OR "),
        numbers
            .iter()
            .map(|v| format!("temp != {v}"))
            .collect::<Vec<_>>()
            .join(" AND "),
        // As deeply nested as the parser allows, around the longest chain.
        format!(
            "{}{}{}",
            "NOT (".repeat(flotilla_filter::MAX_NESTING / 2),
            numbers
                .iter()
                .map(|v| format!("thermostat.temp = {v}"))
                .collect::<Vec<_>>()
                .join(" OR "),
            ")".repeat(flotilla_filter::MAX_NESTING / 2)
        ),
    ];
    let filters: Vec<Filter> = conditions
        .iter()
        .map(|c| parse(&format!("SELECT * FROM devices WHERE {c}")).unwrap())
        .collect();
    let devices = devices();
    let rt = runtime();
    let pool = rt.block_on(sqlite_db(&devices));
    let schema = unique_schema();
    let pg = rt.block_on(postgres_db(&schema, &devices));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        for filter in &filters {
            let want = expected(filter, &devices);
            let text = filter.to_string();
            let head = &text[..text.len().min(80)];
            assert_eq!(
                rt.block_on(sqlite_ids(&pool, filter)),
                Ok(want.clone()),
                "SQLite: {head}"
            );
            assert_eq!(
                rt.block_on(postgres_ids(&pg, &schema, filter)),
                Ok(want),
                "PostgreSQL: {head}"
            );
        }
    }));
    rt.block_on(async {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&pg)
            .await
            .unwrap();
        pg.close().await;
    });
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
