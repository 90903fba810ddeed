//! History visibility for a requesting *server*: whether an event may be sent unredacted to
//! another homeserver over `/backfill`, `/get_missing_events`, `/event` and forwards fill.
//!
//! # The rule (Synapse's `filter_events_for_server` / `event_visible_to_server`)
//!
//! The deciding state is the room state **after** the event (Synapse reads the event's state
//! group, which for a state event includes the event itself). From it take:
//!
//! * the history visibility: the `history_visibility` string of the `m.room.history_visibility`
//!   event with state key `""`; a missing event, missing key, non-string or unknown value is
//!   `shared` (spec: "if the value is not understood, the visibility is assumed to be `shared`");
//! * the memberships of the requesting server's users: the `m.room.member` events whose state
//!   key is a user ID whose server name (after the first `:`) equals the server name.
//!
//! Then the server may see the event when:
//!
//! * `world_readable` or `shared`: always;
//! * `invited`: some user of the server has membership `join` or `invite`;
//! * `joined`: some user of the server has membership `join`.
//!
//! Consequences of reading the state after the event:
//!
//! * an `m.room.history_visibility` event is judged by the value it sets, not the one it
//!   replaces (unlike the client rule in the spec, which allows the more permissive of before
//!   and after; Synapse applies that only to clients, through `prev_content`);
//! * a server user's own `m.room.member` event is judged by the membership it sets: their join
//!   is visible under `joined`, their leave is not (unless another of the server's users is
//!   still joined).
//!
//! Not decided here, left to the caller as Synapse does them around this rule:
//!
//! * the requesting server must be in the room *now* (Synapse `assert_host_in_room` before
//!   answering), which is why `shared` needs no membership at the event;
//! * events the server may not see are sent redacted (`redact=True` for backfill,
//!   get_missing_events and `/event`), not dropped;
//! * events of erased senders, and remote events while the room has partial state, are
//!   treated as not visible;
//! * an outlier (no state known at it) counts as `shared` in Synapse, i.e. visible. Not here:
//!   see [`outlier_visible_to_server`].

use serde_json::{Map, Value};

use crate::event::Pdu;

/// The `m.room.history_visibility` settings, least restrictive first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HistoryVisibility {
    WorldReadable,
    #[default]
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    /// A `history_visibility` value; values not understood are `shared`, per spec.
    pub fn parse(value: &str) -> HistoryVisibility {
        match value {
            "world_readable" => HistoryVisibility::WorldReadable,
            "invited" => HistoryVisibility::Invited,
            "joined" => HistoryVisibility::Joined,
            _ => HistoryVisibility::Shared,
        }
    }

    /// The setting of an `m.room.history_visibility` content; a missing or non-string
    /// `history_visibility` key is `shared`.
    pub fn from_content(content: &Map<String, Value>) -> HistoryVisibility {
        content.get("history_visibility").and_then(Value::as_str).map_or_else(Self::default, Self::parse)
    }

    /// The setting given by the room's `m.room.history_visibility` event, if it has one.
    pub fn from_event(event: Option<&Pdu>) -> HistoryVisibility {
        event.map_or_else(Self::default, |ev| Self::from_content(&ev.content))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryVisibility::WorldReadable => "world_readable",
            HistoryVisibility::Shared => "shared",
            HistoryVisibility::Invited => "invited",
            HistoryVisibility::Joined => "joined",
        }
    }
}

/// The server name of a user ID (or of an event ID of room versions 1-2): everything after the
/// first `:` (server names may carry a port, so not the last). `None` when there is no `:`. The
/// one owner of this rule: the auth rules use it, and SQL calls it as
/// `roomserver_internal.server_name_of`.
pub fn server_name_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

/// The module rule, given the visibility and the memberships (`join`, `invite`, `leave`,
/// `ban`, `knock`) of the requesting server's users in the state after the event.
pub fn server_may_see<'a>(visibility: HistoryVisibility, memberships: impl IntoIterator<Item = &'a str>) -> bool {
    let allowed: &[&str] = match visibility {
        HistoryVisibility::WorldReadable | HistoryVisibility::Shared => return true,
        HistoryVisibility::Invited => &["join", "invite"],
        HistoryVisibility::Joined => &["join"],
    };
    memberships.into_iter().any(|m| allowed.contains(&m))
}

/// [`server_may_see`] over `(user_id, membership)` pairs of all the room's members; only the
/// users of `server_name` count.
pub fn server_may_see_with_members<'a>(
    visibility: HistoryVisibility,
    members: impl IntoIterator<Item = (&'a str, &'a str)>,
    server_name: &str,
) -> bool {
    server_may_see(
        visibility,
        members.into_iter().filter(|(user, _)| server_name_of(user) == Some(server_name)).map(|(_, m)| m),
    )
}

/// Whether `server_name` may see `event`, given the room state *before* it (the current state
/// event of each `(type, state_key)`, in any order; other state is ignored). The event itself
/// is applied on top, since the rule reads the state after the event.
pub fn event_visible_to_server<'a>(event: &'a Pdu, state_before: impl IntoIterator<Item = &'a Pdu>, server_name: &str) -> bool {
    let mut visibility = HistoryVisibility::default();
    // state_key -> membership for the server's users; later entries replace earlier ones, so
    // the event itself comes last.
    let mut members: Vec<(&str, &str)> = Vec::new();
    for ev in state_before.into_iter().chain([event]) {
        match ev.state_pair() {
            Some(("m.room.history_visibility", "")) => visibility = HistoryVisibility::from_content(&ev.content),
            Some(("m.room.member", user)) if server_name_of(user) == Some(server_name) => {
                members.retain(|(u, _)| *u != user);
                if let Some(m) = ev.membership() {
                    members.push((user, m));
                }
            }
            _ => {}
        }
    }
    server_may_see(visibility, members.into_iter().map(|(_, m)| m))
}

/// The rule as the database applies it to an event stored with state, from what it reads of the
/// state after the event: the content of the `m.room.history_visibility` event (`None`: there is
/// none) and the memberships of the server's users. Outliers: [`outlier_visible_to_server`].
pub fn visible_from_stored_state<'a>(
    history_visibility_content: Option<&Value>,
    memberships: impl IntoIterator<Item = &'a str>,
) -> bool {
    let visibility = history_visibility_content.and_then(Value::as_object).map_or_else(HistoryVisibility::default, HistoryVisibility::from_content);
    server_may_see(visibility, memberships)
}

/// Whether `server_name` may see an outlier unredacted. An outlier has no state of its own, so
/// the rule above cannot be applied to it; it is served unredacted only where its visibility
/// does not depend on that state:
///
/// * its sender is a user of the requesting server (the server sent it itself);
/// * it is a state event: `/state` and `/event_auth` serve state and auth chains to every server
///   in the room unredacted anyway, so hiding it here would hide nothing.
///
/// Any other outlier is served redacted, which keeps the DAG connected and reveals no content.
/// (Synapse treats outliers as visible: with no state it defaults to `shared`.)
pub fn outlier_visible_to_server(sender: &str, is_state: bool, server_name: &str) -> bool {
    is_state || server_name_of(sender) == Some(server_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use HistoryVisibility::*;

    fn pdu(id: &str, event_type: &str, state_key: Option<&str>, content: Value) -> Pdu {
        Pdu {
            event_id: id.to_owned(),
            room_id: "!r:a.org".to_owned(),
            sender: "@alice:a.org".to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            content: content.as_object().unwrap().clone(),
            prev_events: vec![],
            auth_events: vec![],
            depth: 1,
            origin_server_ts: 0,
            redacts: None,
        }
    }

    fn vis(value: &str) -> Pdu {
        pdu("$vis", "m.room.history_visibility", Some(""), json!({ "history_visibility": value }))
    }

    fn member(user: &str, membership: &str) -> Pdu {
        pdu(&format!("$m-{user}-{membership}"), "m.room.member", Some(user), json!({ "membership": membership }))
    }

    fn message() -> Pdu {
        pdu("$msg", "m.room.message", None, json!({ "body": "hi" }))
    }

    #[test]
    fn from_stored_state() {
        let joined = json!({ "history_visibility": "joined" });
        assert!(!visible_from_stored_state(Some(&joined), ["leave"]));
        assert!(visible_from_stored_state(Some(&joined), ["leave", "join"]));
        assert!(visible_from_stored_state(None, []));
        assert!(visible_from_stored_state(Some(&json!("joined")), []));
        assert!(!visible_from_stored_state(Some(&json!({ "history_visibility": "invited" })), ["knock"]));
    }

    #[test]
    fn outliers_are_visible_only_where_no_state_decides() {
        // The requesting server's own event, state or not.
        assert!(outlier_visible_to_server("@bob:b.org", false, "b.org"));
        assert!(outlier_visible_to_server("@bob:b.org:8448", false, "b.org:8448"));
        // A state event of another server: /state and /event_auth serve it anyway.
        assert!(outlier_visible_to_server("@alice:a.org", true, "b.org"));
        // Another server's message: its visibility depends on the state it has not got.
        assert!(!outlier_visible_to_server("@alice:a.org", false, "b.org"));
        assert!(!outlier_visible_to_server("@alice:b.org.evil", false, "b.org"));
        assert!(!outlier_visible_to_server("@alice", false, "b.org"));
    }

    #[test]
    fn parsing_defaults_to_shared() {
        assert_eq!(HistoryVisibility::parse("world_readable"), WorldReadable);
        assert_eq!(HistoryVisibility::parse("shared"), Shared);
        assert_eq!(HistoryVisibility::parse("invited"), Invited);
        assert_eq!(HistoryVisibility::parse("joined"), Joined);
        assert_eq!(HistoryVisibility::parse("Joined"), Shared);
        assert_eq!(HistoryVisibility::parse("everyone"), Shared);
        let content = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(HistoryVisibility::from_content(&content(json!({}))), Shared);
        assert_eq!(HistoryVisibility::from_content(&content(json!({ "history_visibility": 3 }))), Shared);
        assert_eq!(HistoryVisibility::from_content(&content(json!({ "history_visibility": "joined" }))), Joined);
        assert_eq!(HistoryVisibility::from_event(None), Shared);
        assert_eq!(HistoryVisibility::from_event(Some(&vis("invited"))), Invited);
        for v in [WorldReadable, Shared, Invited, Joined] {
            assert_eq!(HistoryVisibility::parse(v.as_str()), v);
        }
    }

    #[test]
    fn server_names() {
        assert_eq!(server_name_of("@alice:a.org"), Some("a.org"));
        assert_eq!(server_name_of("@alice:a.org:8448"), Some("a.org:8448"));
        assert_eq!(server_name_of("@alice:[::1]:8448"), Some("[::1]:8448"));
        assert_eq!(server_name_of("@alice"), None);
    }

    #[test]
    fn world_readable_and_shared_need_no_member() {
        for v in [WorldReadable, Shared] {
            assert!(server_may_see(v, []));
            assert!(server_may_see(v, ["leave", "ban"]));
        }
    }

    #[test]
    fn invited_needs_a_join_or_invite() {
        assert!(server_may_see(Invited, ["invite"]));
        assert!(server_may_see(Invited, ["leave", "join"]));
        assert!(!server_may_see(Invited, ["leave", "ban", "knock"]));
        assert!(!server_may_see(Invited, []));
    }

    #[test]
    fn joined_needs_a_join() {
        assert!(server_may_see(Joined, ["join"]));
        assert!(server_may_see(Joined, ["invite", "join"]));
        assert!(!server_may_see(Joined, ["invite", "knock", "leave", "ban"]));
        assert!(!server_may_see(Joined, []));
    }

    #[test]
    fn only_the_servers_own_users_count() {
        let members = [("@alice:a.org", "join"), ("@bob:b.org", "invite"), ("@carol:b.org.evil", "join")];
        assert!(server_may_see_with_members(Joined, members, "a.org"));
        assert!(!server_may_see_with_members(Joined, members, "b.org"));
        assert!(server_may_see_with_members(Invited, members, "b.org"));
        assert!(!server_may_see_with_members(Invited, members, "c.org"));
        assert!(server_may_see_with_members(Shared, members, "c.org"));
    }

    #[test]
    fn event_in_state_each_setting() {
        let msg = message();
        let state = |v: &str, m: &str| vec![vis(v), member("@alice:a.org", "join"), member("@bob:b.org", m)];
        for m in ["join", "invite", "leave", "ban", "knock"] {
            let s = state("world_readable", m);
            assert!(event_visible_to_server(&msg, &s, "b.org"));
            let s = state("shared", m);
            assert!(event_visible_to_server(&msg, &s, "b.org"));
            let s = state("invited", m);
            assert_eq!(event_visible_to_server(&msg, &s, "b.org"), m == "join" || m == "invite", "invited/{m}");
            let s = state("joined", m);
            assert_eq!(event_visible_to_server(&msg, &s, "b.org"), m == "join", "joined/{m}");
        }
        // No history visibility event: shared. A server with no member at all may see it.
        assert!(event_visible_to_server(&msg, &[member("@alice:a.org", "join")], "c.org"));
        assert!(!event_visible_to_server(&msg, &[vis("joined"), member("@alice:a.org", "join")], "c.org"));
    }

    #[test]
    fn visibility_event_is_judged_by_the_value_it_sets() {
        let before = [vis("world_readable"), member("@alice:a.org", "join")];
        // world_readable -> joined: hidden from a server with no joined user.
        assert!(!event_visible_to_server(&vis("joined"), &before, "b.org"));
        let before = [vis("joined"), member("@alice:a.org", "join")];
        // joined -> shared: visible.
        assert!(event_visible_to_server(&vis("shared"), &before, "b.org"));
        assert!(event_visible_to_server(&vis("joined"), &before, "a.org"));
    }

    #[test]
    fn membership_event_is_judged_by_the_membership_it_sets() {
        let before = [vis("joined"), member("@bob:b.org", "invite")];
        assert!(event_visible_to_server(&member("@bob:b.org", "join"), &before, "b.org"));
        let before = [vis("joined"), member("@bob:b.org", "join")];
        assert!(!event_visible_to_server(&member("@bob:b.org", "leave"), &before, "b.org"));
        // Another user of the server still joined keeps it visible.
        let before = [vis("joined"), member("@bob:b.org", "join"), member("@dan:b.org", "join")];
        assert!(event_visible_to_server(&member("@bob:b.org", "leave"), &before, "b.org"));
        // invited: the invite itself is visible.
        let before = [vis("invited")];
        assert!(event_visible_to_server(&member("@bob:b.org", "invite"), &before, "b.org"));
        assert!(!event_visible_to_server(&member("@bob:b.org", "knock"), &before, "b.org"));
    }

    #[test]
    fn later_state_replaces_earlier_and_bad_membership_is_ignored() {
        let state = [vis("joined"), member("@bob:b.org", "join"), member("@bob:b.org", "leave")];
        assert!(!event_visible_to_server(&message(), &state, "b.org"));
        let no_membership = pdu("$x", "m.room.member", Some("@bob:b.org"), json!({}));
        let state = [vis("joined"), member("@bob:b.org", "join"), no_membership];
        assert!(!event_visible_to_server(&message(), &state, "b.org"));
        // A history visibility event with a non-empty state key is not the room's setting.
        let odd = pdu("$odd", "m.room.history_visibility", Some("x"), json!({ "history_visibility": "joined" }));
        assert!(event_visible_to_server(&message(), &[odd], "b.org"));
    }
}
