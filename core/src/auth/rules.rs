//! `check_event_auth`: the rules of the room version specifications, in their order. Rule
//! numbers in comments are room version 12's; earlier versions differ where the flags say.

use serde_json::{Map, Value};

use super::power_levels::{creators, parse_level, PowerLevels};
use super::third_party_invite::signed_by_invite_keys;
use super::{is_valid_user_id, server_of, Rejection, StateLookup};
use crate::event::Pdu;
use crate::room_version::{RoomVersion, ALL};

type Outcome = Result<(), Rejection>;

fn reject(reason: impl Into<String>) -> Outcome {
    Err(Rejection::new(reason))
}

fn membership_of<'s>(state: &'s dyn StateLookup, user: &str) -> &'s str {
    state.lookup("m.room.member", user).and_then(|m| m.membership()).unwrap_or("leave")
}

/// Is `event` allowed by the authorization rules of `rv` against `state` (its auth events, or a
/// full room state: only the entries the rules consult are read)?
pub fn check_event_auth(rv: &RoomVersion, event: &Pdu, state: &dyn StateLookup) -> Outcome {
    // 1. The create event.
    if event.event_type == "m.room.create" && event.state_key.as_deref() == Some("") {
        return check_create(rv, event);
    }
    let Some(create) = state.lookup("m.room.create", "") else {
        return reject("there is no m.room.create event in the room state");
    };
    // 2 (v12). The room ID is the create event's ID.
    if rv.room_id_from_create_event && create.event_id.get(1..) != event.room_id.get(1..) {
        return reject(format!("room {} is not the room of create event {}", event.room_id, create.event_id));
    }
    // 4. m.federate = false keeps other servers out.
    if create.content.get("m.federate") == Some(&Value::Bool(false)) && server_of(&event.sender) != server_of(&create.sender) {
        return reject(format!("the room is not federated and {} is not on {}", event.sender, server_of(&create.sender)));
    }
    // v1-v5: m.room.aliases.
    if rv.special_case_aliases_auth && event.event_type == "m.room.aliases" {
        return match event.state_key.as_deref() {
            None => reject("an m.room.aliases event must have a state_key"),
            Some(k) if k != server_of(&event.sender) => {
                reject(format!("m.room.aliases state_key {k} is not the sender's server {}", server_of(&event.sender)))
            }
            Some(_) => Ok(()),
        };
    }
    let levels = PowerLevels::from_state(rv, state);
    // 5. Membership.
    if event.event_type == "m.room.member" {
        return check_member(rv, event, create, state, &levels);
    }
    // 6. Everything else needs a joined sender.
    let sender_membership = membership_of(state, &event.sender);
    if sender_membership != "join" {
        return reject(format!("sender {} is not joined (membership {sender_membership})", event.sender));
    }
    let sender_level = levels.user(&event.sender);
    // 7. Third-party invites.
    if event.event_type == "m.room.third_party_invite" {
        let invite = levels.named("invite");
        return if sender_level >= invite {
            Ok(())
        } else {
            reject(format!("sender {} has power {sender_level}, below the invite level {invite}", event.sender))
        };
    }
    // 8. The level the event type requires.
    let required = levels.for_event(&event.event_type, event.is_state());
    if required > sender_level {
        return reject(format!(
            "sender {} has power {sender_level}, below the {required} needed for {}",
            event.sender, event.event_type
        ));
    }
    // 9. State keys that are user IDs belong to that user.
    if let Some(k) = &event.state_key {
        if k.starts_with('@') && k != &event.sender {
            return reject(format!("state_key {k} is a user ID other than the sender {}", event.sender));
        }
    }
    // 10. Power levels.
    if event.event_type == "m.room.power_levels" && event.state_key.as_deref() == Some("") {
        return check_power_levels(rv, event, create, state, sender_level);
    }
    // v1-v2: redactions.
    if rv.redaction_auth_rule && event.event_type == "m.room.redaction" {
        if sender_level >= levels.named("redact") {
            return Ok(());
        }
        let target = event.redacts.as_deref().unwrap_or("");
        if server_of(target) == server_of(&event.event_id) {
            return Ok(());
        }
        return reject(format!("sender {} may not redact {target}: below the redact level and another server's event", event.sender));
    }
    Ok(())
}

fn check_create(rv: &RoomVersion, event: &Pdu) -> Outcome {
    if !event.prev_events.is_empty() {
        return reject("an m.room.create event must have no prev_events");
    }
    if rv.room_id_from_create_event {
        // The room ID is derived, so Pdu::from_json has refused a room_id key already.
        if !event.auth_events.is_empty() {
            return reject("an m.room.create event must have no auth_events");
        }
    } else if server_of(&event.room_id) != server_of(&event.sender) {
        return reject(format!("room {} is not on the create event sender's server {}", event.room_id, server_of(&event.sender)));
    }
    if let Some(v) = event.content.get("room_version") {
        match v.as_str() {
            Some(id) if ALL.iter().any(|r| r.id == id) => {}
            _ => return reject(format!("content.room_version {v} is not a recognised room version")),
        }
    }
    if !rv.implicit_room_creator && !event.content.contains_key("creator") {
        return reject("content has no creator");
    }
    if rv.privileged_creators {
        if let Some(extra) = event.content.get("additional_creators") {
            let ok = matches!(extra, Value::Array(items) if items.iter().all(|i| i.as_str().is_some_and(is_valid_user_id)));
            if !ok {
                return reject("content.additional_creators must be an array of user IDs");
            }
        }
    }
    Ok(())
}

fn check_member(rv: &RoomVersion, event: &Pdu, create: &Pdu, state: &dyn StateLookup, levels: &PowerLevels) -> Outcome {
    let (Some(target), Some(membership)) = (event.state_key.as_deref(), event.membership()) else {
        return reject("an m.room.member event needs a state_key and content.membership");
    };
    let sender = event.sender.as_str();
    let sender_membership = membership_of(state, sender);
    let target_membership = membership_of(state, target);
    let join_rule = state
        .lookup("m.room.join_rules", "")
        .and_then(|j| j.content.get("join_rule"))
        .and_then(Value::as_str)
        .unwrap_or("invite");
    let sender_level = levels.user(sender);
    let target_level = levels.user(target);
    match membership {
        "join" => {
            // The creator's own first join.
            let creator = creators(create, rv).first().copied();
            if event.prev_events.len() == 1 && event.prev_events[0] == create.event_id && creator == Some(target) {
                return Ok(());
            }
            if sender != target {
                return reject(format!("{sender} cannot join on behalf of {target}"));
            }
            if target_membership == "ban" {
                return reject(format!("{target} is banned"));
            }
            let invite_like = join_rule == "invite" || (rv.knock_join_rule && join_rule == "knock");
            if invite_like {
                return if matches!(target_membership, "invite" | "join") {
                    Ok(())
                } else {
                    reject(format!("join rule is {join_rule} and {target} is not invited (membership {target_membership})"))
                };
            }
            let restricted = (rv.restricted_join_rule && join_rule == "restricted")
                || (rv.knock_restricted_join_rule && join_rule == "knock_restricted");
            if restricted {
                if matches!(target_membership, "join" | "invite") {
                    return Ok(());
                }
                let Some(via) = event.content.get("join_authorised_via_users_server").and_then(Value::as_str) else {
                    return reject(format!("join rule is {join_rule} and the join has no join_authorised_via_users_server"));
                };
                if membership_of(state, via) != "join" {
                    return reject(format!("{via}, who authorised the join, is not joined"));
                }
                if levels.user(via) < levels.named("invite") {
                    return reject(format!("{via}, who authorised the join, may not invite"));
                }
                return Ok(());
            }
            if join_rule == "public" {
                return Ok(());
            }
            reject(format!("join rule {join_rule} does not let {target} join"))
        }
        "invite" => {
            if let Some(tpi) = event.content.get("third_party_invite") {
                return check_third_party_invite(event, tpi, target_membership, state);
            }
            if sender_membership != "join" {
                return reject(format!("{sender} is not joined and cannot invite"));
            }
            if matches!(target_membership, "join" | "ban") {
                return reject(format!("{target} cannot be invited: membership is {target_membership}"));
            }
            let invite = levels.named("invite");
            if sender_level >= invite {
                Ok(())
            } else {
                reject(format!("{sender} has power {sender_level}, below the invite level {invite}"))
            }
        }
        "leave" => {
            if sender == target {
                let may_leave = matches!(target_membership, "invite" | "join") || (rv.knock_join_rule && target_membership == "knock");
                return if may_leave {
                    Ok(())
                } else {
                    reject(format!("{target} cannot leave from membership {target_membership}"))
                };
            }
            if sender_membership != "join" {
                return reject(format!("{sender} is not joined and cannot kick or unban"));
            }
            let ban = levels.named("ban");
            if target_membership == "ban" && sender_level < ban {
                return reject(format!("{sender} has power {sender_level}, below the ban level {ban} needed to unban"));
            }
            let kick = levels.named("kick");
            if sender_level >= kick && target_level < sender_level {
                Ok(())
            } else {
                reject(format!("{sender} (power {sender_level}, kick level {kick}) cannot kick {target} (power {target_level})"))
            }
        }
        "ban" => {
            if sender_membership != "join" {
                return reject(format!("{sender} is not joined and cannot ban"));
            }
            let ban = levels.named("ban");
            if sender_level >= ban && target_level < sender_level {
                Ok(())
            } else {
                reject(format!("{sender} (power {sender_level}, ban level {ban}) cannot ban {target} (power {target_level})"))
            }
        }
        "knock" if rv.knock_join_rule => {
            let knockable = join_rule == "knock" || (rv.knock_restricted_join_rule && join_rule == "knock_restricted");
            if !knockable {
                return reject(format!("join rule {join_rule} does not allow knocking"));
            }
            if sender != target {
                return reject(format!("{sender} cannot knock on behalf of {target}"));
            }
            if matches!(sender_membership, "ban" | "invite" | "join") {
                return reject(format!("{sender} cannot knock from membership {sender_membership}"));
            }
            Ok(())
        }
        other => reject(format!("unknown membership {other:?}")),
    }
}

fn check_third_party_invite(event: &Pdu, tpi: &Value, target_membership: &str, state: &dyn StateLookup) -> Outcome {
    let target = event.state_key.as_deref().unwrap_or("");
    if target_membership == "ban" {
        return reject(format!("{target} is banned"));
    }
    let Some(Value::Object(signed)) = tpi.get("signed") else {
        return reject("content.third_party_invite has no signed object");
    };
    let (Some(mxid), Some(token)) = (signed.get("mxid").and_then(Value::as_str), signed.get("token").and_then(Value::as_str)) else {
        return reject("third_party_invite.signed needs mxid and token");
    };
    if mxid != target {
        return reject(format!("third_party_invite.signed.mxid {mxid} is not the invited user {target}"));
    }
    let Some(invite) = state.lookup("m.room.third_party_invite", token) else {
        return reject(format!("no m.room.third_party_invite with token {token} in the room state"));
    };
    if invite.sender != event.sender {
        return reject(format!("{} did not send the third-party invite (sent by {})", event.sender, invite.sender));
    }
    if signed_by_invite_keys(signed, &invite.content) {
        Ok(())
    } else {
        reject("no signature in third_party_invite.signed matches the third-party invite's public keys")
    }
}

fn is_int_in(v: &Value, rv: &RoomVersion) -> bool {
    if rv.integer_power_levels {
        v.as_i64().is_some()
    } else {
        parse_level(v, rv).is_some()
    }
}

fn check_power_levels(rv: &RoomVersion, event: &Pdu, create: &Pdu, state: &dyn StateLookup, sender_level: i64) -> Outcome {
    const NAMED: [&str; 7] = ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];
    let new = &event.content;
    // 10.1-10.3: shape (integers only from v10; integers or integer strings before).
    if rv.integer_power_levels {
        for k in NAMED {
            if new.get(k).is_some_and(|v| !is_int_in(v, rv)) {
                return reject(format!("power level {k} is not an integer"));
            }
        }
        for k in ["events", "notifications"] {
            match new.get(k) {
                None => {}
                Some(Value::Object(m)) if m.values().all(|v| is_int_in(v, rv)) => {}
                Some(_) => return reject(format!("power levels {k} must be an object of integers")),
            }
        }
    }
    match new.get("users") {
        None => {}
        Some(Value::Object(users)) => {
            for (user, level) in users {
                if !is_valid_user_id(user) {
                    return reject(format!("power levels users has an invalid user ID {user:?}"));
                }
                if !is_int_in(level, rv) {
                    return reject(format!("power level of {user} is not an integer"));
                }
            }
        }
        Some(_) => return reject("power levels users must be an object"),
    }
    // 10.4 (v12): creators are not listed; their power is infinite.
    if rv.privileged_creators {
        if let Some(Value::Object(users)) = new.get("users") {
            if let Some(c) = creators(create, rv).into_iter().find(|c| users.contains_key(*c)) {
                return reject(format!("power levels users lists the room creator {c}"));
            }
        }
    }
    // 10.5: the first power levels event is allowed.
    let Some(old_event) = state.lookup("m.room.power_levels", "") else { return Ok(()) };
    let old = &old_event.content;
    let level = |m: &Map<String, Value>, k: &str| m.get(k).and_then(|v| parse_level(v, rv));

    // 10.6: named levels added, changed or removed.
    for k in NAMED {
        let (before, after) = (level(old, k), level(new, k));
        if before == after {
            continue;
        }
        if before.is_some_and(|b| b > sender_level) {
            return reject(format!("{k} is {} now, above the sender's power {sender_level}", before.unwrap_or_default()));
        }
        if after.is_some_and(|a| a > sender_level) {
            return reject(format!("{k} would become {}, above the sender's power {sender_level}", after.unwrap_or_default()));
        }
    }
    // 10.7-10.8: events (and notifications from v6).
    let mut maps = vec!["events"];
    if rv.limit_notifications_power_levels {
        maps.push("notifications");
    }
    let empty = Map::new();
    for m in maps {
        let before = old.get(m).and_then(Value::as_object).unwrap_or(&empty);
        let after = new.get(m).and_then(Value::as_object).unwrap_or(&empty);
        for key in before.keys().chain(after.keys()) {
            let (b, a) = (level(before, key), level(after, key));
            if b == a {
                continue;
            }
            if b.is_some_and(|b| b > sender_level) {
                return reject(format!("{m}.{key} is {} now, above the sender's power {sender_level}", b.unwrap_or_default()));
            }
            if a.is_some_and(|a| a > sender_level) {
                return reject(format!("{m}.{key} would become {}, above the sender's power {sender_level}", a.unwrap_or_default()));
            }
        }
    }
    // 10.9-10.10: users.
    let before = old.get("users").and_then(Value::as_object).unwrap_or(&empty);
    let after = new.get("users").and_then(Value::as_object).unwrap_or(&empty);
    for user in before.keys().chain(after.keys()) {
        let (b, a) = (level(before, user), level(after, user));
        if b == a {
            continue;
        }
        if user != &event.sender && b.is_some_and(|b| b >= sender_level) {
            return reject(format!("{user} has power {}, not below the sender's {sender_level}", b.unwrap_or_default()));
        }
        if a.is_some_and(|a| a > sender_level) {
            return reject(format!("{user} would get power {}, above the sender's {sender_level}", a.unwrap_or_default()));
        }
    }
    Ok(())
}
