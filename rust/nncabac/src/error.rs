//! One error type for the whole crate; the Python bindings map each variant to an exception.

use core::fmt;

/// Everything that can go wrong when coding or decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The stream ended before the decoder had read everything it needed.
    Truncated,
    /// The stream is not a valid NNC stream (a value out of range, a flag of an unsupported
    /// feature, a missing terminating bin...).
    Corrupt(&'static str),
    /// A coding parameter is outside what the format (or this implementation) allows.
    InvalidParameter(String),
    /// Valid data that this version does not support (a newer format version, a feature).
    Unsupported(String),
    /// A value cannot be represented (a level that would not fit in int32, a quantizer overflow).
    Overflow(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "stream is truncated: read past the end of the data"),
            Error::Corrupt(why) => write!(f, "corrupt stream: {why}"),
            Error::InvalidParameter(why) => write!(f, "invalid parameter: {why}"),
            Error::Overflow(why) => write!(f, "overflow: {why}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Crate-wide result alias.
pub type Result<T> = core::result::Result<T, Error>;
