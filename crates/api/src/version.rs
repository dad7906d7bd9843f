//! The `api-version` query parameter every `/api` request carries.

use crate::error::ApiError;
use crate::query::query_pairs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `2022-07-31`, the stable version.
    V2022_07_31,
    /// `2022-10-31-preview`: adds `maxpagesize` and a few fields.
    V2022_10_31Preview,
}

impl ApiVersion {
    pub const SUPPORTED: [&'static str; 2] = ["2022-07-31", "2022-10-31-preview"];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2022_07_31 => "2022-07-31",
            ApiVersion::V2022_10_31Preview => "2022-10-31-preview",
        }
    }

    pub fn is_preview(self) -> bool {
        self == ApiVersion::V2022_10_31Preview
    }

    /// Reads the version from a query string. IoT Central answers a missing or unknown version
    /// with a `NotFound` error that names the value (`"undefined"` when missing); so do we.
    pub fn from_query(query: Option<&str>) -> Result<ApiVersion, ApiError> {
        let pairs = query_pairs(query);
        let value = pairs
            .iter()
            .find(|(key, _)| key == "api-version")
            .map(|(_, value)| value.as_str());
        match value {
            Some("2022-07-31") => Ok(ApiVersion::V2022_07_31),
            Some("2022-10-31-preview") => Ok(ApiVersion::V2022_10_31Preview),
            other => Err(ApiError::not_found(format!(
                "\"{}\" is not a valid API version. Supported versions are {}.",
                other.unwrap_or("undefined"),
                Self::SUPPORTED.join(" and ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_query() {
        assert_eq!(
            ApiVersion::from_query(Some("a=1&api-version=2022-07-31")).unwrap(),
            ApiVersion::V2022_07_31
        );
        assert!(
            ApiVersion::from_query(Some("api-version=2022-10-31-preview"))
                .unwrap()
                .is_preview()
        );
        let err = ApiVersion::from_query(None).unwrap_err();
        assert!(
            err.message
                .starts_with("\"undefined\" is not a valid API version")
        );
        assert!(ApiVersion::from_query(Some("api-version=1.0")).is_err());
        assert!(
            ApiVersion::from_query(Some("api-version=2022-10-31%2Dpreview"))
                .unwrap()
                .is_preview()
        );
    }
}
