//! Placeholders for bulk statements: many rows, or many ids, in one statement.

/// Rows per bulk statement (SQLite allows 32,766 parameters; PostgreSQL 65,535).
pub(crate) const CHUNK: usize = 250;

/// `(?, ?, ?), (?, ?, ?)`: `rows` rows of `columns` placeholders.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// `?, ?, ?`: `n` placeholders.
pub(crate) fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(value_rows(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(marks(3), "?, ?, ?");
    }
}
