//! Turns core errors into PostgreSQL errors with a SQLSTATE a front end can map to an HTTP status
//! and Matrix errcode (the table is in README.md, "Errors").

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use roomserver_core::{Error, ErrorKind};

pub fn sqlstate(e: &Error) -> PgSqlErrorCode {
    match e.kind {
        ErrorKind::BadJson => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, // 22023
        ErrorKind::IntegerOutOfRange => PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, // 22003
        // A whole PDU over 64 KiB is a size limit (413), an ID over 255 bytes a bad field (400).
        ErrorKind::StringTooLong if e.field.as_deref() == Some("(root)") => {
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED // 54000
        }
        ErrorKind::StringTooLong => PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION, // 22001
        ErrorKind::UnsupportedRoomVersion => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, // 0A000
        ErrorKind::NotFound => PgSqlErrorCode::ERRCODE_NO_DATA_FOUND, // P0002
        ErrorKind::MissingReferences => PgSqlErrorCode::ERRCODE_FOREIGN_KEY_VIOLATION, // 23503
        ErrorKind::InvalidParameter => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION, // 22000
        ErrorKind::TooLarge => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, // 54000
        ErrorKind::CorruptStorage => PgSqlErrorCode::ERRCODE_DATA_CORRUPTED, // XX001
    }
}

/// Raises `e` as an ERROR; the message names the field, the detail repeats it for programs.
pub fn raise(e: Error, context: &str) -> ! {
    let mut report = ErrorReport::new(sqlstate(&e), format!("{context}: {}", e.message), "pg_roomserver");
    if let Some(field) = &e.field {
        report = report.set_detail(format!("field: {field}"));
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a core result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self, context: &str) -> T;
}

impl<T> OrRaise<T> for Result<T, Error> {
    fn or_raise(self, context: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => raise(e, context),
        }
    }
}

/// SPI failures that are not PostgreSQL errors (those propagate by themselves) are bugs here.
impl<T> OrRaise<T> for Result<T, pgrx::spi::SpiError> {
    fn or_raise(self, context: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => {
                ErrorReport::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("{context}: SPI: {e}"), "pg_roomserver")
                    .report(PgLogLevel::ERROR);
                unreachable!()
            }
        }
    }
}

/// A NULL where a value is required.
pub fn null_argument(name: &str) -> ! {
    ErrorReport::new(PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED, format!("{name} must not be NULL"), "pg_roomserver")
        .report(PgLogLevel::ERROR);
    unreachable!()
}
