//! IoT Central's device CSV. Import reads `IOTC_DEVICEID` (required) and `IOTC_DEVICENAME`
//! (optional), in any order and any letter case, and ignores other columns, so an exported file
//! imports again. Export writes the columns of IoT Central's export: the id, the name, the
//! primary and secondary SAS keys and X.509 thumbprints.

use std::collections::HashSet;
use std::io::Read;

use crate::error::{CliError, Result};

pub const DEVICE_ID: &str = "IOTC_DEVICEID";
pub const DEVICE_NAME: &str = "IOTC_DEVICENAME";

pub const EXPORT_COLUMNS: [&str; 6] = [
    DEVICE_ID,
    DEVICE_NAME,
    "IOTC_SASKEY_PRIMARY",
    "IOTC_SASKEY_SECONDARY",
    "IOTC_X509THUMBPRINT_PRIMARY",
    "IOTC_X509THUMBPRINT_SECONDARY",
];

/// One row to import: its line in the file, the device id and its name (if the row gives one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub id: String,
    pub name: Option<String>,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub id: String,
    pub message: String,
}

/// Reads the file's rows: those to import, and those refused already (no id, a repeated id).
pub fn read_import(source: impl Read, name: &str) -> Result<(Vec<ImportRow>, Vec<BadRow>)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(source);
    let headers = reader
        .headers()
        .map_err(|e| CliError::file(name, e))?
        .clone();
    let column = |wanted: &str| {
        headers.iter().position(|h| {
            h.trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(wanted)
        })
    };
    let id_column = column(DEVICE_ID).ok_or_else(|| {
        CliError::file(
            name,
            format!(
                "has no {DEVICE_ID} column (its header row is: {})",
                headers.iter().collect::<Vec<_>>().join(",")
            ),
        )
    })?;
    let name_column = column(DEVICE_NAME);
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| CliError::file(name, e))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let id = record.get(id_column).unwrap_or("").to_string();
        if id.is_empty() {
            if record.iter().all(str::is_empty) {
                continue; // a blank line
            }
            bad.push(BadRow {
                line,
                id,
                message: format!("no {DEVICE_ID}"),
            });
            continue;
        }
        if !seen.insert(id.clone()) {
            bad.push(BadRow {
                line,
                id,
                message: "the id is repeated in the file".into(),
            });
            continue;
        }
        let name = name_column
            .and_then(|c| record.get(c))
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        rows.push(ImportRow { line, id, name });
    }
    Ok((rows, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iot_centrals_columns_in_any_order_and_case() {
        let file = "\u{feff}iotc_devicename,Other,IOTC_DEVICEID\nFirst,x,dev-1\n,y,dev-2\nNo id,z,\n\nAgain,,dev-1\n";
        let (rows, bad) = read_import(file.as_bytes(), "f.csv").unwrap();
        assert_eq!(
            rows,
            vec![
                ImportRow {
                    line: 2,
                    id: "dev-1".into(),
                    name: Some("First".into())
                },
                ImportRow {
                    line: 3,
                    id: "dev-2".into(),
                    name: None
                },
            ]
        );
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].line, 4);
        assert!(bad[1].message.contains("repeated"));
        assert!(read_import("id,name\n".as_bytes(), "f.csv").is_err());
    }
}
