//! `jsonb` arguments as `serde_json::Value`, with errors a caller can act on.
//!
//! pgrx's own `JsonB` argument panics when the value does not convert (nesting deeper than
//! serde_json's limit of 127 levels, a number outside f64's range), which the caller sees as XX000.
//! Every function of ours that takes `jsonb` takes a [`JsonInput`] instead, so those inputs are
//! `54000` (program_limit_exceeded) and `22003` (numeric_value_out_of_range) like any other bad
//! input, raised before the function body runs and so before anything is written.

use std::ffi::CStr;

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{direct_function_call, pg_sys, FromDatum, PgLogLevel, PgSqlErrorCode};
use serde_json::Value;

/// A `jsonb` argument converted to a `serde_json::Value`.
pub struct JsonInput(pub Value);

pgrx::impl_sql_translatable!(JsonInput, arg_only = "jsonb");

impl FromDatum for JsonInput {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-null jsonb datum, as the SQL signature declares; both allocations are
        // freed before returning.
        unsafe {
            let varlena = datum.cast_mut_ptr();
            let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
            let text = direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(detoasted.into())])
                .expect("jsonb_out returns text for a jsonb datum");
            let parsed = match text.to_str() {
                Ok(s) => serde_json::from_str::<Value>(s).map_err(|e| conversion_error(&e)),
                Err(_) => Err((PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, "jsonb is not valid UTF-8 (the database encoding must be UTF8)".into())),
            };
            pg_sys::pfree(text.as_ptr() as *mut std::ffi::c_void);
            if detoasted != varlena {
                pg_sys::pfree(detoasted as *mut std::ffi::c_void);
            }
            match parsed {
                Ok(v) => Some(JsonInput(v)),
                Err((code, message)) => {
                    ErrorReport::new(code, message, "pg_roomserver").report(PgLogLevel::ERROR);
                    unreachable!("ERROR does not return")
                }
            }
        }
    }
}

/// The SQLSTATE and message for a jsonb value serde_json cannot represent.
fn conversion_error(e: &serde_json::Error) -> (PgSqlErrorCode, String) {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        (PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED, "JSON nested 128 or more levels deep; at most 127 levels are accepted".into())
    } else if text.starts_with("number out of range") {
        (PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "JSON number outside the range of a double".into())
    } else {
        (PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("JSON value not accepted: {text}"))
    }
}

// SAFETY: unboxes through FromDatum above, which handles NULL.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonInput {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum().unwrap_or_else(|| panic!("argument {index} must not be null")) }
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum().into() }
    }
}
