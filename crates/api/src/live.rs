//! The lifetime of long-lived responses (event streams): they end when the server begins to
//! stop, so the listener's graceful shutdown, which waits for every response, is not held up.

use tokio_util::sync::CancellationToken;

/// Shared by every stream of one server.
#[derive(Clone, Default)]
pub struct Live {
    closing: CancellationToken,
}

impl Live {
    /// Ends every stream (at its next look) and refuses none: a stream opened after this ends
    /// at once.
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves once the server begins to stop.
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.closing.is_cancelled()
    }
}
