//! Kraken's web interface: its files live in `kraken-ui/assets/` and are
//! embedded in the binary at compile time, so a platform needs no npm step
//! and no internet to serve its UI.

/// The UI's routes (placeholder until the interface lands).
pub fn router() -> axum::Router {
    axum::Router::new()
}
