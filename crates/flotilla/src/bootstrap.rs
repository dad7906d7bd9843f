//! What the first start of an empty database makes: the application's ids, the default
//! enrollment group and the administrator API token. Later starts find them and change nothing.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use flotilla_model::api_token::{ApiToken, RoleAssignment, new_token_value, token_hash};
use flotilla_model::enrollment_group::{self, EnrollmentGroup};
use flotilla_model::keys::{random_hex, random_key};
use flotilla_model::{new_etag, roles};
use flotilla_store::Store;
use jiff::ToSpan;

/// The application's identity, made once.
pub struct App {
    pub id_scope: String,
    pub app_id: String,
}

/// The id of the administrator token made at first start.
pub const ADMIN_TOKEN_ID: &str = "admin";

/// The fewest characters an operator-supplied administrator token may have: a short one could
/// be guessed, and it opens every part of the API.
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

/// An administrator token the operator supplied (`FLOTILLA_ADMIN_TOKEN`), long enough.
pub struct SuppliedAdminToken(String);

impl SuppliedAdminToken {
    /// Refuses an empty or short value; the message never repeats it.
    pub fn parse(value: &str) -> anyhow::Result<SuppliedAdminToken> {
        let value = flotilla_model::api_token::token_from_header(value)
            .context("FLOTILLA_ADMIN_TOKEN is empty")?;
        let chars = value.chars().count();
        anyhow::ensure!(
            chars >= MIN_ADMIN_TOKEN_CHARS,
            "FLOTILLA_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters long (it has \
             {chars}); for a random one: openssl rand -base64 33"
        );
        Ok(SuppliedAdminToken(value))
    }
}

pub async fn run(
    store: &Store,
    data_dir: &Path,
    admin_token: Option<&SuppliedAdminToken>,
) -> anyhow::Result<App> {
    // DPS ID scopes look like 0ne00AB12CD.
    let id_scope = store
        .setting_or_init("id_scope", || {
            format!("0ne{}", random_hex::<4>().to_uppercase())
        })
        .await?;
    let app_id = store.setting_or_init("app_id", random_hex::<16>).await?;
    let first_start = store
        .setting_or_init("first_start_done", || "no".into())
        .await?
        == "no";

    if first_start {
        let group = EnrollmentGroup {
            id: enrollment_group::DEFAULT_ID.into(),
            etag: new_etag(),
            display_name: enrollment_group::DEFAULT_DISPLAY_NAME.into(),
            enabled: true,
            kind: enrollment_group::EnrollmentGroupType::Iot,
            primary_key: random_key(),
            secondary_key: random_key(),
        };
        store.insert_enrollment_group(&group, true).await?;
    }
    ensure_admin_token(store, data_dir, admin_token, &app_id).await?;
    if first_start {
        store.mark_setting("first_start_done", "yes").await?;
    }
    Ok(App { id_scope, app_id })
}

/// With `FLOTILLA_ADMIN_TOKEN`, that value is the admin token; otherwise an empty token table
/// gets a generated one, written to `<data-dir>/admin-token` for the operator.
async fn ensure_admin_token(
    store: &Store,
    data_dir: &Path,
    supplied: Option<&SuppliedAdminToken>,
    app_id: &str,
) -> anyhow::Result<()> {
    let expiry = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .checked_add(10.years())?
        .timestamp();
    let token = ApiToken {
        id: ADMIN_TOKEN_ID.into(),
        roles: vec![RoleAssignment {
            role: roles::ADMINISTRATOR.into(),
            organization: None,
        }],
        expiry,
    };
    if let Some(SuppliedAdminToken(value)) = supplied {
        store.upsert_api_token(&token, &token_hash(value)).await?;
        tracing::info!(
            token = ADMIN_TOKEN_ID,
            "using the administrator token from FLOTILLA_ADMIN_TOKEN"
        );
        return Ok(());
    }
    if store.count_api_tokens().await? > 0 {
        return Ok(());
    }
    let value = new_token_value(ADMIN_TOKEN_ID, app_id, expiry);
    let path = data_dir.join("admin-token");
    write_secret(&path, &value).with_context(|| format!("writing {}", path.display()))?;
    store.insert_api_token(&token, &token_hash(&value)).await?;
    tracing::info!(path = %path.display(), "created the administrator API token; it is in this file");
    Ok(())
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
