//! What can go wrong in a command, and the exit code each gives (docs/cli.md lists them).

use std::fmt;

/// The process's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for `jobs watch`, the job completed.
    Ok = 0,
    /// The server refused the request, could not be reached, or a file could not be used.
    Failure = 1,
    /// Bad arguments (clap uses 2 for its own usage errors too).
    Usage = 2,
    /// `jobs watch`: the job failed (it could not run).
    JobFailed = 3,
    /// `jobs watch`: the job was cancelled (its failures reached its cancellation threshold).
    JobCancelled = 4,
    /// `jobs watch`: the job was stopped.
    JobStopped = 5,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// An IoT Central error answer: `{"error": {"code", "message", "requestId", "time"}}`, or what
/// stands for it when the body has another shape.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (requestId {id})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Api(ApiFailure),
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// A failure already reported in the command's output (e.g. rows of an import).
    #[error("{0}")]
    Reported(String),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    pub fn file(path: impl fmt::Display, message: impl fmt::Display) -> CliError {
        CliError::File {
            path: path.to_string(),
            message: message.to_string(),
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_) => Exit::Usage,
            _ => Exit::Failure,
        }
    }

    /// The API's own error, when the server answered with one.
    pub fn api(&self) -> Option<&ApiFailure> {
        match self {
            CliError::Api(failure) => Some(failure),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, CliError>;
