//! What can go wrong at the detector's boundary.

use thiserror::Error;

/// Errors from building a [`Detector`](super::Detector) or feeding it a window.
#[derive(Debug, Error, PartialEq)]
pub enum DetectError {
    /// A configuration value is out of its range.
    #[error("invalid detector configuration: `{field}` {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    /// The detector was built without any feature.
    #[error("the detector needs at least one feature")]
    NoFeatures,
    /// Two features share one name, so findings could not say which one drove them.
    #[error("feature `{0}` is named twice")]
    DuplicateFeature(String),
    /// A per-feature floor names a feature the detector does not have (most likely a typo).
    #[error("a floor is set for `{0}`, which is not one of the detector's features")]
    UnknownFeature(String),
    /// An observation carries a different number of values than the detector has features.
    #[error("entity `{entity}` has {got} feature values, the detector has {expected} features")]
    FeatureCount {
        entity: String,
        expected: usize,
        got: usize,
    },
    /// A value is NaN or infinite; missing values are `None`, never NaN.
    #[error("entity `{entity}` has a non-finite value for `{feature}`")]
    NonFinite { entity: String, feature: String },
    /// One entity appears twice in one window.
    #[error("entity `{0}` appears twice in one window")]
    DuplicateEntity(String),
}
