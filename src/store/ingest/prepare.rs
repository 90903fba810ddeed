//! Ingest phase 2: every PDU validated and split for storage before anything is written, with
//! its room version (a create event earlier in the batch sets it for the rest of its room), and
//! repeats within the call found.

use std::collections::HashMap;

use roomserver_core::stored_form::{room_version_for, split, StoredForm};
use roomserver_core::RoomVersion;
use serde_json::Value;

use super::nids::Nids;
use super::Call;
use crate::errors::OrRaise;

pub struct Prepared {
    /// Where it stands in the input.
    pub position: usize,
    pub rv: RoomVersion,
    pub form: StoredForm,
    /// The position of the first identical event in the call, for a repeat.
    pub repeat_of: Option<usize>,
}

pub fn prepare(items: &[Value], nids: &mut Nids, requested: Option<&str>, call: Call) -> Vec<Prepared> {
    let mut prepared = Vec::with_capacity(items.len());
    let mut first_position: HashMap<(String, String), usize> = HashMap::new();
    for (i, json) in items.iter().enumerate() {
        let known = json.get("room_id").and_then(Value::as_str).and_then(|r| nids.version_of(r));
        let rv = room_version_for(json, known, requested).or_raise(&call.at(i));
        let form = split(json, &rv).or_raise(&call.at(i));
        nids.versions.entry(form.pdu.room_id.clone()).or_insert_with(|| rv.id.to_owned());
        let key = (form.pdu.room_id.clone(), form.pdu.event_id.clone());
        let repeat_of = first_position.get(&key).copied();
        if repeat_of.is_none() {
            first_position.insert(key, i);
        }
        prepared.push(Prepared { position: i, rv, form, repeat_of });
    }
    prepared
}
