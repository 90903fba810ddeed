//! Room state as the generator tracks it: one shared `Base` (the state at the last fork or merge)
//! and per-branch overlays holding only what changed on that branch, so a fork of a room with
//! 100,000 members copies nothing but a few tips.

use std::collections::HashMap;

use roomserver_core::Pdu;

use crate::power_levels::PowerLevels;

/// `(event type, state key)` -> event ID, the shape state resolution works on.
pub type StateMap<T> = HashMap<(String, String), T>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Never had a membership event.
    None,
    Join,
    Invite,
    Knock,
    Leave,
    Ban,
}

impl Membership {
    pub fn parse(s: &str) -> Membership {
        match s {
            "join" => Membership::Join,
            "invite" => Membership::Invite,
            "knock" => Membership::Knock,
            "leave" => Membership::Leave,
            "ban" => Membership::Ban,
            _ => Membership::None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinRule {
    Public,
    Invite,
    Knock,
}

impl JoinRule {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRule::Public => "public",
            JoinRule::Invite => "invite",
            JoinRule::Knock => "knock",
        }
    }

    pub fn parse(s: &str) -> JoinRule {
        match s {
            "public" => JoinRule::Public,
            "knock" => JoinRule::Knock,
            _ => JoinRule::Invite,
        }
    }
}

/// A reference to an event that a later event can point at.
#[derive(Clone, Debug)]
pub struct Tip {
    pub event_id: String,
    /// v1/v2 only: the reference hash that `[id, {"sha256": hash}]` references carry.
    pub ref_hash: Option<String>,
    pub depth: i64,
}

pub struct Base {
    pub state: StateMap<String>,
    /// Indexed by user number.
    pub membership: Vec<Membership>,
    pub power: PowerLevels,
    pub join_rule: JoinRule,
}

#[derive(Clone)]
pub struct Branch {
    /// The server whose users mostly send on this branch.
    pub server: usize,
    pub tips: Vec<Tip>,
    pub state: StateMap<String>,
    pub membership: HashMap<u32, Membership>,
    pub power: Option<PowerLevels>,
    pub join_rule: Option<JoinRule>,
    /// Recent messages (event ID, sender number) that a redaction may target.
    pub recent_messages: Vec<(String, u32)>,
}

impl Branch {
    pub fn new(server: usize, tips: Vec<Tip>, recent_messages: Vec<(String, u32)>) -> Branch {
        Branch { server, tips, state: HashMap::new(), membership: HashMap::new(), power: None, join_rule: None, recent_messages }
    }
}

/// The state on one branch: its overlay over the base.
pub struct View<'a> {
    pub base: &'a Base,
    pub branch: &'a Branch,
}

impl View<'_> {
    pub fn membership(&self, user: u32) -> Membership {
        match self.branch.membership.get(&user) {
            Some(m) => *m,
            None => self.base.membership.get(user as usize).copied().unwrap_or(Membership::None),
        }
    }

    pub fn power(&self) -> &PowerLevels {
        self.branch.power.as_ref().unwrap_or(&self.base.power)
    }

    pub fn join_rule(&self) -> JoinRule {
        self.branch.join_rule.unwrap_or(self.base.join_rule)
    }

    pub fn state_id(&self, key: &(String, String)) -> Option<&String> {
        self.branch.state.get(key).or_else(|| self.base.state.get(key))
    }

    pub fn state_id_of(&self, event_type: &str, state_key: &str) -> Option<&String> {
        // Build the key once; the maps are keyed by owned strings.
        self.state_id(&(event_type.to_owned(), state_key.to_owned()))
    }
}

/// The state events generated so far, which state resolution and the auth-chain walk need.
/// Messages are not kept: they are never in auth chains or state.
#[derive(Default)]
pub struct Store {
    pub events: HashMap<String, Pdu>,
    /// v1/v2: the reference hash of each stored event, for `[id, {"sha256": ..}]` references.
    pub ref_hashes: HashMap<String, String>,
}

impl Store {
    pub fn event(&self, event_id: &str) -> Option<&Pdu> {
        self.events.get(event_id)
    }
}
