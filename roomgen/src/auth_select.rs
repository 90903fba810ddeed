//! Spec (server-server API) "Auth events selection": the create event (not from room version 12
//! on, MSC4291), the current power levels, the sender's membership, and for membership events the
//! target's membership and, for join/invite/knock, the join rules.

use crate::state::View;

/// The auth events of an event with this type/state key/membership sent by `sender`, from the
/// state before it.
pub fn select_auth_events(
    view: &View,
    lists_create_event: bool,
    event_type: &str,
    state_key: Option<&str>,
    membership: Option<&str>,
    sender: &str,
) -> Vec<String> {
    if event_type == "m.room.create" && state_key == Some("") {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(5);
    let mut push = |id: Option<&String>| {
        if let Some(id) = id {
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
    };
    if lists_create_event {
        push(view.state_id_of("m.room.create", ""));
    }
    push(view.state_id_of("m.room.power_levels", ""));
    push(view.state_id_of("m.room.member", sender));
    if event_type == "m.room.member" {
        if let Some(target) = state_key {
            push(view.state_id_of("m.room.member", target));
        }
        if matches!(membership, Some("join" | "invite" | "knock")) {
            push(view.state_id_of("m.room.join_rules", ""));
        }
    }
    out
}
