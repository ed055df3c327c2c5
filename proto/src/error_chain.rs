//! An error and its causes on one line, for the messages that wrap an error whose own text
//! says little (tonic's transport errors, aya's map and program errors).

use std::error::Error;

/// `err`, then each of its causes, joined with `: `. A cause whose text the line already
/// ends with (an error that prints its source as well as returning it) is said once.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Whether `err` or one of its causes is an I/O error of `kind`.
pub fn caused_by(err: &(dyn Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut next = Some(err);
    while let Some(cause) = next {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        next = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to create map `M`")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_error() {
        let err = Outer(std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            error_chain(&err),
            "failed to create map `M`: Operation not permitted (os error 1)"
        );
        assert!(caused_by(&err, std::io::ErrorKind::PermissionDenied));
        assert!(!caused_by(&err, std::io::ErrorKind::NotFound));

        #[derive(Debug, thiserror::Error)]
        #[error("map error: {0}")]
        struct Says(#[source] Outer);
        assert_eq!(
            error_chain(&Says(err)),
            "map error: failed to create map `M`: Operation not permitted (os error 1)",
            "a cause the error already prints is said once"
        );
    }
}
