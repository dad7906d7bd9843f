//! The single error type of the crate.

/// Why a filter string was rejected.
///
/// `position` is a 0-based offset in *characters* (not bytes) so that an API
/// client can point at the offending spot in the string it sent, whatever
/// its encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at position {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl FilterError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
        }
    }
}
