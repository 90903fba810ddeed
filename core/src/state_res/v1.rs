//! State resolution v1 (room version 1), as Synapse implements it: conflicted power levels are
//! resolved first, then join rules, then memberships, each by walking the candidates from the
//! shallowest and keeping the last one that passes the auth rules against what is resolved so
//! far; other keys take the first candidate (deepest first) that passes. Ties in depth break by
//! the SHA-1 of the event ID, which is why this module uses SHA-1.

use sha1::{Digest, Sha1};

use super::EventStore;
use crate::auth::{auth_types_for_event, check_event_auth, StateMap};
use crate::error::{Error, Result};
use crate::event::Pdu;
use crate::room_version::RoomVersion;

fn ordered<'a>(mut events: Vec<&'a Pdu>) -> Vec<&'a Pdu> {
    // Deepest first; equal depths by the hex SHA-1 of the event ID.
    events.sort_by_cached_key(|e| (-e.depth, hex::encode(Sha1::digest(e.event_id.as_bytes()))));
    events
}

mod hex {
    pub fn encode(bytes: impl AsRef<[u8]>) -> String {
        bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub(super) fn resolve(rv: &RoomVersion, sets: &[StateMap<String>], store: &dyn EventStore) -> Result<StateMap<String>> {
    // A key is conflicted when the sets that have it disagree; a key only some sets have is
    // unconflicted if they agree.
    let mut unconflicted: StateMap<String> = StateMap::new();
    let mut conflicted: StateMap<Vec<String>> = StateMap::new();
    for set in sets {
        for (key, id) in set {
            if let Some(ids) = conflicted.get_mut(key) {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            } else if let Some(existing) = unconflicted.get(key) {
                if existing != id {
                    let first = unconflicted.remove(key).unwrap_or_default();
                    conflicted.insert(key.clone(), vec![first, id.clone()]);
                }
            } else {
                unconflicted.insert(key.clone(), id.clone());
            }
        }
    }
    let fetch = |id: &str| store.event(id).ok_or_else(|| Error::not_found(format!("event {id} is not known")));

    // The auth events the conflicted events need, taken from the unconflicted state.
    let mut auth_events: StateMap<&Pdu> = StateMap::new();
    for ids in conflicted.values() {
        for id in ids {
            for key in auth_types_for_event(rv, fetch(id)?) {
                if !auth_events.contains_key(&key) {
                    if let Some(aid) = unconflicted.get(&key) {
                        auth_events.insert(key, fetch(aid)?);
                    }
                }
            }
        }
    }

    let mut resolved: StateMap<&Pdu> = StateMap::new();
    let mut candidates: StateMap<Vec<&Pdu>> = StateMap::new();
    for (key, ids) in &conflicted {
        let events = ids.iter().map(|id| fetch(id)).collect::<Result<Vec<_>>>()?;
        candidates.insert(key.clone(), events);
    }
    let mut keys: Vec<(String, String)> = candidates.keys().cloned().collect();
    keys.sort();
    let pl_key = ("m.room.power_levels".to_owned(), String::new());
    let phases: [&dyn Fn(&(String, String)) -> bool; 3] =
        [&|k| *k == pl_key, &|k| k.0 == "m.room.join_rules", &|k| k.0 == "m.room.member"];
    for phase in phases {
        for key in keys.iter().filter(|k| phase(k)) {
            let winner = resolve_auth_events(rv, &candidates[key], &auth_events);
            resolved.insert(key.clone(), winner);
        }
        auth_events.extend(resolved.iter().map(|(k, v)| (k.clone(), *v)));
    }
    let others: Vec<&(String, String)> = keys.iter().filter(|k| !resolved.contains_key(*k)).collect();
    for key in others {
        let winner = resolve_normal_events(rv, &candidates[key], &auth_events);
        resolved.insert(key.clone(), winner);
    }

    let mut out = unconflicted;
    out.extend(resolved.into_iter().map(|(k, v)| (k, v.event_id.clone())));
    Ok(out)
}

/// From the shallowest candidate on, each next one must pass the auth rules with the previous
/// one in place; the last to do so wins.
fn resolve_auth_events<'a>(rv: &RoomVersion, events: &[&'a Pdu], auth_events: &StateMap<&'a Pdu>) -> &'a Pdu {
    let mut reverse = ordered(events.to_vec());
    reverse.reverse();
    let needed: Vec<(String, String)> = events.iter().flat_map(|e| auth_types_for_event(rv, e)).collect();
    let mut auth: StateMap<&Pdu> = needed.into_iter().filter_map(|k| auth_events.get(&k).map(|v| (k, *v))).collect();
    let mut prev = reverse[0];
    for &ev in &reverse[1..] {
        auth.insert(super::key_of(prev), prev);
        if check_event_auth(rv, ev, &auth).is_err() {
            return prev;
        }
        prev = ev;
    }
    prev
}

/// The first candidate (deepest first) that passes the auth rules, else the last one.
fn resolve_normal_events<'a>(rv: &RoomVersion, events: &[&'a Pdu], auth_events: &StateMap<&'a Pdu>) -> &'a Pdu {
    let ordered = ordered(events.to_vec());
    for &ev in &ordered {
        if check_event_auth(rv, ev, auth_events).is_ok() {
            return ev;
        }
    }
    ordered[ordered.len() - 1]
}
