//! The `api-version` query parameter every `/api` request carries.

use crate::error::ApiError;
use crate::query::query_pairs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `2022-07-31`, the stable version.
    V2022_07_31,
    /// `2022-06-30-preview`: what the Azure CLI's `az iot central` sends. Its operations are the
    /// stable version's, with OData's `$top` (the page size), `$filter` and `$orderby` on lists.
    V2022_06_30Preview,
    /// `2022-10-31-preview`: adds `maxpagesize` and a few fields.
    V2022_10_31Preview,
}

impl ApiVersion {
    /// Every version this server speaks, the stable one first.
    pub const ALL: [ApiVersion; 3] = [
        ApiVersion::V2022_07_31,
        ApiVersion::V2022_06_30Preview,
        ApiVersion::V2022_10_31Preview,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V2022_07_31 => "2022-07-31",
            ApiVersion::V2022_06_30Preview => "2022-06-30-preview",
            ApiVersion::V2022_10_31Preview => "2022-10-31-preview",
        }
    }

    /// The query parameter that sets a list's page size: the stable version declares none;
    /// 2022-06-30-preview has OData's `$top`, which 2022-10-31-preview renamed `maxpagesize`.
    pub fn page_size_parameter(self) -> Option<&'static str> {
        match self {
            ApiVersion::V2022_07_31 => None,
            ApiVersion::V2022_06_30Preview => Some("$top"),
            ApiVersion::V2022_10_31Preview => Some("maxpagesize"),
        }
    }

    /// Reads the version from a query string. IoT Central answers a missing or unknown version
    /// with a `NotFound` error that names the value (`"undefined"` when missing); so do we, and
    /// name the versions this server speaks. The GA `1.0` API is among the unknown: its shapes
    /// differ (a device's template is `instanceOf`, for one), so serving it as 2022-07-31 would
    /// mislead its clients.
    pub fn from_query(query: Option<&str>) -> Result<ApiVersion, ApiError> {
        let pairs = query_pairs(query);
        let value = pairs
            .iter()
            .find(|(key, _)| key == "api-version")
            .map(|(_, value)| value.as_str());
        Self::ALL
            .into_iter()
            .find(|version| Some(version.as_str()) == value)
            .ok_or_else(|| {
                let names = Self::ALL.map(ApiVersion::as_str);
                let (last, others) = names.split_last().expect("versions exist");
                ApiError::not_found(format!(
                    "\"{}\" is not a valid API version. Supported versions are {} and {last}.",
                    value.unwrap_or("undefined"),
                    others.join(", "),
                ))
            })
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
        assert_eq!(
            ApiVersion::from_query(Some("api-version=2022-06-30-preview")).unwrap(),
            ApiVersion::V2022_06_30Preview
        );
        let err = ApiVersion::from_query(None).unwrap_err();
        assert!(
            err.message
                .starts_with("\"undefined\" is not a valid API version")
        );
        let err = ApiVersion::from_query(Some("api-version=1.0")).unwrap_err();
        assert!(
            err.message.ends_with(
                "Supported versions are 2022-07-31, 2022-06-30-preview and 2022-10-31-preview."
            ),
            "{}",
            err.message
        );
        assert_eq!(
            ApiVersion::from_query(Some("api-version=2022-10-31%2Dpreview")).unwrap(),
            ApiVersion::V2022_10_31Preview
        );
    }
}
