//! The IoT Central device-group filter language
//! (`SELECT * FROM devices WHERE ...`).
//!
//! A filter is [`parse`]d (and type-checked) once when a device group is
//! created, printed back canonically with `Display`, and evaluated in memory
//! ([`Filter::matches`]). The crate knows the language, not the database:
//! the store compiles a filter into SQL over its `devices` table.
//!
//! ```
//! use flotilla_filter::parse;
//!
//! let filter = parse("select * from devices where $provisioned = true and temp > 20").unwrap();
//! assert_eq!(
//!     filter.to_string(),
//!     "SELECT * FROM devices WHERE $provisioned = true AND temp > 20"
//! );
//!
//! let err = parse("SELECT * FROM devices WHERE temp ~ 20").unwrap_err();
//! assert_eq!(err.position, 33);
//! ```

mod ast;
mod error;
mod eval;
mod lex;
mod parse;
mod print;

pub use ast::{
    CompareOp, Expr, Field, Filter, KEYWORDS, Literal, MAX_NAME_LEN, Source, ValueKind, is_keyword,
};
pub use error::FilterError;
pub use eval::DeviceView;
pub use parse::{MAX_NESTING, MAX_VALUES, parse};
