//! Secrets given as flags: every local user can read a process's command line (`ps`,
//! `/proc/<pid>/cmdline`), while only its own user can read its environment. The server warns,
//! naming the flag and where the secret belongs instead, and never logs the secret.

/// Logs a warning for each flag among `args` (the process's arguments) that carries a secret.
pub fn warn_about(args: impl IntoIterator<Item = String>) {
    for (flag, instead) in exposed(args) {
        tracing::warn!(
            "{flag} on the command line is readable by every local user; set {instead} in the environment instead"
        );
    }
}

/// The secret-carrying flags among `args`, each with the environment variable to use instead.
fn exposed(args: impl IntoIterator<Item = String>) -> Vec<(&'static str, &'static str)> {
    let mut exposed = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        match flag.as_str() {
            "--admin-token" => exposed.push(("--admin-token", "FLOTILLA_ADMIN_TOKEN")),
            "--metrics-token" => exposed.push(("--metrics-token", "FLOTILLA_METRICS_TOKEN")),
            "--database-url" => {
                let url = inline.or_else(|| args.next()).unwrap_or_default();
                if has_password(&url) {
                    exposed.push(("--database-url", "FLOTILLA_DATABASE_URL"));
                }
            }
            _ => {}
        }
    }
    exposed
}

/// Whether a database URL holds a password (`scheme://user:password@host`, or `password=` in
/// its query).
fn has_password(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority_and_path, query) = after_scheme.split_once('?').unwrap_or((after_scheme, ""));
    let user_info = authority_and_path
        .split('/')
        .next()
        .unwrap_or("")
        .rsplit_once('@')
        .map(|(user_info, _)| user_info);
    user_info.is_some_and(|user_info| user_info.contains(':'))
        || query.split('&').any(|param| param.starts_with("password="))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Vec<&'static str> {
        exposed(args.iter().map(|a| a.to_string()))
            .into_iter()
            .map(|(flag, _)| flag)
            .collect()
    }

    #[test]
    fn an_admin_token_flag_is_exposed_in_either_form() {
        assert_eq!(flags(&["serve", "--admin-token", "x"]), ["--admin-token"]);
        assert_eq!(flags(&["serve", "--admin-token=x"]), ["--admin-token"]);
        assert_eq!(
            flags(&["serve", "--metrics-token", "x"]),
            ["--metrics-token"]
        );
    }

    #[test]
    fn a_database_url_is_exposed_only_with_a_password() {
        assert_eq!(
            flags(&["serve", "--database-url", "postgres://u:p@h/db"]),
            ["--database-url"]
        );
        assert_eq!(
            flags(&["serve", "--database-url=postgres://u@h/db?password=p"]),
            ["--database-url"]
        );
        assert!(flags(&["serve", "--database-url", "postgres://u@h/db"]).is_empty());
        assert!(flags(&["serve", "--database-url", "sqlite://./data/a.db?mode=rwc"]).is_empty());
        assert!(flags(&["serve", "--data-dir", "/srv/user:x@y"]).is_empty());
    }
}
