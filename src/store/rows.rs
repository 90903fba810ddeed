//! Typed reads of the rows our statements return. The schema promises each column's type and
//! whether it may be NULL, so a value that does not fit is corrupt storage: it raises `XX001`
//! (data_corrupted) naming the statement and the column, instead of turning into NID 0 or `""`
//! and being stored or served as if it were true.

use pgrx::spi::{SpiError, SpiHeapTupleData, SpiTupleTable};
use pgrx::{FromDatum, IntoDatum};
use roomserver_core::Error;

use crate::errors::raise;

/// One row of a statement's result.
pub struct Row<'r, 'conn> {
    row: &'r SpiHeapTupleData<'conn>,
    statement: &'static str,
}

impl Row<'_, '_> {
    /// A column the schema says is never NULL.
    pub fn value<T: IntoDatum + FromDatum>(&self, ordinal: usize, column: &str) -> T {
        self.nullable(ordinal, column).unwrap_or_else(|| self.corrupt(column, "NULL where a value is required"))
    }

    /// A column that may be NULL.
    pub fn nullable<T: IntoDatum + FromDatum>(&self, ordinal: usize, column: &str) -> Option<T> {
        match self.row.get::<T>(ordinal) {
            Ok(v) => v,
            Err(e @ SpiError::DatumError(_)) => self.corrupt(column, e),
            Err(e) => raise(Error::corrupt(&self.place(column), format!("the column cannot be read: {e}")), self.statement),
        }
    }

    fn place(&self, column: &str) -> String {
        format!("{} column {column}", self.statement)
    }

    fn corrupt(&self, column: &str, why: impl std::fmt::Display) -> ! {
        raise(Error::corrupt(&self.place(column), why), self.statement)
    }
}

/// Each row of `table` through `read`.
pub fn each<'conn, T>(table: SpiTupleTable<'conn>, statement: &'static str, mut read: impl FnMut(&Row<'_, 'conn>) -> T) -> Vec<T> {
    table.map(|row| read(&Row { row: &row, statement })).collect()
}

/// The first row of `table` through `read`, if there is one.
pub fn first<'conn, T>(table: SpiTupleTable<'conn>, statement: &'static str, read: impl FnOnce(&Row<'_, 'conn>) -> T) -> Option<T> {
    table.into_iter().next().map(|row| read(&Row { row: &row, statement }))
}
