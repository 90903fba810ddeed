//! Prepared SPI plans kept for the life of the backend, so hot paths parse and plan each
//! statement once per session instead of once per call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::{PgBuiltInOids, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use crate::errors::OrRaise;
use crate::store::rows::{self, Row};

pub const TEXT_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID);
pub const INT8_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8ARRAYOID);
pub const INT2_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT2ARRAYOID);
pub const BOOL_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::BOOLARRAYOID);
pub const INT4_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT4ARRAYOID);
pub const INT4: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
pub const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
pub const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
pub const BYTEA_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAARRAYOID);
pub const BYTEA: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAOID);

/// A statement with its parameter types; `mutating` statements run read-write.
pub struct Statement {
    pub name: &'static str,
    pub sql: &'static str,
    pub args: &'static [PgOid],
    pub mutating: bool,
}

thread_local! {
    static PLANS: RefCell<HashMap<&'static str, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// Executes `stmt` with `args` through its kept plan (preparing it on first use) and hands the
/// result to `read`. The plan table is not borrowed while the statement runs: the statement may
/// call a function of ours that runs statements in turn.
pub fn execute<'conn, R>(
    client: &mut SpiClient<'conn>,
    stmt: &Statement,
    args: &[DatumWithOid],
    read: impl FnOnce(SpiTupleTable<'conn>) -> R,
) -> R {
    let plan = match PLANS.with(|plans| plans.borrow().get(stmt.name).cloned()) {
        Some(p) => p,
        None => {
            let prepared = if stmt.mutating {
                client.prepare_mut(stmt.sql, stmt.args)
            } else {
                client.prepare(stmt.sql, stmt.args)
            }
            .or_raise(stmt.name);
            let plan = Rc::new(prepared.keep());
            PLANS.with(|plans| plans.borrow_mut().insert(stmt.name, plan.clone()));
            plan
        }
    };
    let table = if stmt.mutating {
        client.update(&*plan, None, args)
    } else {
        client.select(&*plan, None, args)
    }
    .or_raise(stmt.name);
    read(table)
}

/// Executes `stmt` and reads each row with typed column reads ([`crate::store::rows`]).
pub fn query<'conn, T>(client: &mut SpiClient<'conn>, stmt: &Statement, args: &[DatumWithOid], read: impl FnMut(&Row<'_, 'conn>) -> T) -> Vec<T> {
    let name = stmt.name;
    execute(client, stmt, args, |t| rows::each(t, name, read))
}

/// Executes `stmt` and reads its first row, if any.
pub fn query_first<'conn, T>(
    client: &mut SpiClient<'conn>,
    stmt: &Statement,
    args: &[DatumWithOid],
    read: impl FnOnce(&Row<'_, 'conn>) -> T,
) -> Option<T> {
    let name = stmt.name;
    execute(client, stmt, args, |t| rows::first(t, name, read))
}
