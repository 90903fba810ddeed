//! An independent check of the spec's authorization rules ("Authorization rules" in the room
//! version specs) for the kinds of events the generator makes, evaluated against each event's
//! own auth events. It covers create, membership (join, invite, leave/kick/unban, ban, knock),
//! power levels changes, redactions (v1/v2 rule), and the sender's level for everything else;
//! it does not cover third-party invites or restricted joins, which the generator never makes.

use std::collections::HashMap;

use roomserver_core::{Pdu, RoomVersion};
use serde_json::Value;

fn int(v: Option<&Value>, default: i64) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(default)
}

fn domain(id: &str) -> &str {
    id.split_once(':').map(|(_, d)| d).unwrap_or("")
}

struct Auth<'a> {
    rv: RoomVersion,
    create: &'a Pdu,
    by_key: HashMap<(&'a str, &'a str), &'a Pdu>,
}

impl Auth<'_> {
    fn creators(&self) -> Vec<&str> {
        if self.rv.implicit_room_creator {
            vec![self.create.sender.as_str()]
        } else {
            vec![self.create.content.get("creator").and_then(Value::as_str).unwrap_or("")]
        }
    }

    fn membership(&self, user: &str) -> &str {
        self.by_key.get(&("m.room.member", user)).and_then(|p| p.membership()).unwrap_or("leave")
    }

    fn pl(&self) -> Option<&serde_json::Map<String, Value>> {
        self.by_key.get(&("m.room.power_levels", "")).map(|p| &p.content)
    }

    fn user_level(&self, user: &str) -> i64 {
        if self.rv.privileged_creators && self.creators().contains(&user) {
            return i64::MAX;
        }
        match self.pl() {
            Some(pl) => int(pl.get("users").and_then(|u| u.get(user)), int(pl.get("users_default"), 0)),
            None if self.creators().contains(&user) => 100,
            None => 0,
        }
    }

    fn level(&self, key: &str, default_with_pl: i64) -> i64 {
        match self.pl() {
            Some(pl) => int(pl.get(key), default_with_pl),
            None => 0,
        }
    }

    fn event_level(&self, event_type: &str, is_state: bool) -> i64 {
        let default = if is_state { self.level("state_default", 50) } else { self.level("events_default", 0) };
        self.pl().map(|pl| int(pl.get("events").and_then(|e| e.get(event_type)), default)).unwrap_or(default)
    }

    fn join_rule(&self) -> &str {
        self.by_key
            .get(&("m.room.join_rules", ""))
            .and_then(|p| p.content.get("join_rule"))
            .and_then(Value::as_str)
            .unwrap_or("invite")
    }
}

/// `Err(reason)` when the spec's auth rules reject `e` given its auth events (`all` holds every
/// event of the room by ID, `create` is its create event).
pub fn check(e: &Pdu, all: &HashMap<&str, &Pdu>, create: &Pdu, rv: RoomVersion) -> Result<(), String> {
    if e.event_type == "m.room.create" {
        if !e.prev_events.is_empty() {
            return Err("create with prev events".into());
        }
        if !rv.room_id_from_create_event && domain(&e.room_id) != domain(&e.sender) {
            return Err("create: room and sender domains differ".into());
        }
        return Ok(());
    }
    let mut by_key = HashMap::new();
    for id in &e.auth_events {
        let a = all.get(id.as_str()).ok_or("unknown auth event")?;
        let pair = a.state_pair().ok_or("auth event is not state")?;
        if by_key.insert(pair, *a).is_some() {
            return Err(format!("duplicate auth event for {pair:?}"));
        }
    }
    if rv.room_id_from_create_event {
        by_key.insert(("m.room.create", ""), create);
    } else if !by_key.contains_key(&("m.room.create", "")) {
        return Err("no create event in auth events".into());
    }
    let auth = Auth { rv, create, by_key };
    let sender_level = auth.user_level(&e.sender);

    if e.event_type == "m.room.member" {
        let target = e.state_key.as_deref().ok_or("member without state key")?;
        let target_membership = auth.membership(target);
        let sender_membership = auth.membership(&e.sender);
        let target_level = auth.user_level(target);
        return match e.membership().unwrap_or("") {
            "join" => {
                if e.prev_events == [create.event_id.clone()] && auth.creators().contains(&target) {
                    return Ok(());
                }
                if e.sender != target {
                    return Err("join for someone else".into());
                }
                match (target_membership, auth.join_rule()) {
                    ("ban", _) => Err("banned user joins".into()),
                    (_, "public") => Ok(()),
                    ("invite" | "join", "invite" | "knock") => Ok(()),
                    (m, r) => Err(format!("join from {m} under {r}")),
                }
            }
            "invite" => {
                if sender_membership != "join" {
                    return Err("inviter not joined".into());
                }
                if matches!(target_membership, "join" | "ban") {
                    return Err(format!("invite of a {target_membership} user"));
                }
                if sender_level < auth.level("invite", 0) {
                    return Err("inviter below invite level".into());
                }
                Ok(())
            }
            "leave" if e.sender == target => match target_membership {
                "invite" | "join" | "knock" => Ok(()),
                m => Err(format!("leave from {m}")),
            },
            "leave" => {
                if sender_membership != "join" {
                    return Err("kicker not joined".into());
                }
                if target_membership == "ban" && sender_level < auth.level("ban", 50) {
                    return Err("unban below ban level".into());
                }
                if sender_level >= auth.level("kick", 50) && target_level < sender_level {
                    Ok(())
                } else {
                    Err("kick without power".into())
                }
            }
            "ban" => {
                if sender_membership != "join" {
                    return Err("banner not joined".into());
                }
                if sender_level >= auth.level("ban", 50) && target_level < sender_level {
                    Ok(())
                } else {
                    Err("ban without power".into())
                }
            }
            "knock" if rv.knock_join_rule => {
                let rule_ok = auth.join_rule() == "knock" || (rv.knock_restricted_join_rule && auth.join_rule() == "knock_restricted");
                if !rule_ok {
                    return Err(format!("knock under {}", auth.join_rule()));
                }
                if e.sender != target {
                    return Err("knock for someone else".into());
                }
                match sender_membership {
                    "ban" | "join" => Err(format!("knock from {sender_membership}")),
                    _ => Ok(()),
                }
            }
            m => Err(format!("unknown membership {m}")),
        };
    }

    if auth.membership(&e.sender) != "join" {
        return Err("sender not joined".into());
    }
    if sender_level < auth.event_level(&e.event_type, e.is_state()) {
        return Err("sender below the event's level".into());
    }
    if let Some(k) = &e.state_key {
        if k.starts_with('@') && k != &e.sender {
            return Err("state key of another user".into());
        }
    }
    if e.event_type == "m.room.power_levels" {
        let new = &e.content;
        if rv.privileged_creators {
            if let Some(users) = new.get("users").and_then(Value::as_object) {
                if auth.creators().iter().any(|c| users.contains_key(*c)) {
                    return Err("creator listed in power levels".into());
                }
            }
        }
        let Some(old) = auth.pl() else { return Ok(()) };
        for key in ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"] {
            let (o, n) = (old.get(key).and_then(Value::as_i64), new.get(key).and_then(Value::as_i64));
            if o != n && (o.is_some_and(|o| o > sender_level) || n.is_some_and(|n| n > sender_level)) {
                return Err(format!("{key} changed beyond the sender's level"));
            }
        }
        let empty = serde_json::Map::new();
        for map in ["events", "users"] {
            let o = old.get(map).and_then(Value::as_object).unwrap_or(&empty);
            let n = new.get(map).and_then(Value::as_object).unwrap_or(&empty);
            for k in o.keys().chain(n.keys()) {
                let (ov, nv) = (o.get(k).and_then(Value::as_i64), n.get(k).and_then(Value::as_i64));
                if ov == nv {
                    continue;
                }
                let old_too_high = if map == "users" { k != &e.sender && ov.is_some_and(|v| v >= sender_level) } else { ov.is_some_and(|v| v > sender_level) };
                if old_too_high || nv.is_some_and(|v| v > sender_level) {
                    return Err(format!("{map}.{k} changed beyond the sender's level"));
                }
            }
        }
    }
    if e.event_type == "m.room.redaction" && rv.redaction_auth_rule {
        let target = e.redacts.as_deref().ok_or("redaction without redacts")?;
        if sender_level < auth.level("redact", 50) && domain(target) != domain(&e.event_id) {
            return Err("redaction of another server's event without the redact level".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomgen::{generate_vec, RoomConfig};

    /// The oracle rejects what it should, so that generated events passing it means something
    /// (roomgen/tests/oracle_auth_agrees.rs).
    #[test]
    fn the_oracle_rejects_unauthorised_events() {
        let rv = RoomVersion::from_id("11").unwrap();
        let cfg = RoomConfig { room_version: "11".into(), events: 120, fork_every: 0, ..RoomConfig::default() };
        let (events, _) = generate_vec(&cfg).unwrap();
        let pdus: Vec<Pdu> = events.iter().map(|e| Pdu::from_json(e, &rv).unwrap()).collect();
        let all: HashMap<&str, &Pdu> = pdus.iter().map(|p| (p.event_id.as_str(), p)).collect();
        // Users 0-2 are the creator and the moderators of a 3-server room; take a plain member.
        let plain = |p: &&Pdu| !["@user0:", "@user1:", "@user2:"].iter().any(|s| p.sender.starts_with(s));
        let message = pdus.iter().filter(plain).find(|p| p.event_type == "m.room.message").unwrap();
        // A message whose sender is swapped for a user who never joined.
        let mut forged = message.clone();
        forged.sender = "@stranger:elsewhere".into();
        assert!(check(&forged, &all, &pdus[0], rv).is_err());
        // A topic change by a user without the state level.
        let mut topic = forged.clone();
        topic.sender = message.sender.clone();
        topic.event_type = "m.room.topic".into();
        topic.state_key = Some(String::new());
        assert!(check(&topic, &all, &pdus[0], rv).is_err());
        // An event without the create event among its auth events.
        let mut orphan = message.clone();
        orphan.auth_events.retain(|a| a != &pdus[0].event_id);
        assert!(check(&orphan, &all, &pdus[0], rv).is_err());
        assert!(check(message, &all, &pdus[0], rv).is_ok());
    }
}
