//! The generator proper: creation, arrivals, churn, messages, redactions, and forks whose
//! branches (each mostly driven by one server's users) make conflicting power-level and
//! membership changes before they are merged by one event that has all branch tips as
//! prev_events. Every event is built against the state before it on its branch, so its sender is
//! allowed by the auth rules, and its auth_events follow the spec's auth events selection.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use roomserver_core::prng::Rng;
use roomserver_core::room_version::EventFormat;
use roomserver_core::{hashes, Error, Pdu, Result, RoomVersion};

use crate::auth_select::select_auth_events;
use crate::merge::resolve_branch_states;
use crate::power_levels::PowerLevels;
use crate::state::{Base, Branch, JoinRule, Membership, StateMap, Store, Tip, View};
use crate::{RoomConfig, RoomSummary};

const RECENT_MESSAGES: usize = 32;
/// Most non-staff users listed in power levels at once, so the event stays small in big rooms.
const MAX_PROMOTED: usize = 12;
const FIRST_TS: i64 = 1_700_000_000_000;

/// A chosen event before it is placed in the DAG.
struct Draft {
    kind: &'static str,
    sender: u32,
    event_type: &'static str,
    state_key: Option<String>,
    content: Value,
    redacts: Option<String>,
}

/// Conflicting changes scheduled at the start of a branch.
#[derive(Clone, Copy)]
enum Planned {
    PowerForUser(u32),
    Ban(u32),
    Displayname(u32),
    TopicLevel,
    Topic,
}

pub struct Generator<'a, F: FnMut(&Value)> {
    p: Picker<'a>,
    sink: F,
    room_id: String,
    base: Base,
    branches: Vec<Branch>,
    plans: Vec<Vec<Planned>>,
    store: Store,
    summary: RoomSummary,
}

fn state_draft(kind: &'static str, sender: u32, event_type: &'static str, state_key: &str, content: Value) -> Draft {
    Draft { kind, sender, event_type, state_key: Some(state_key.to_owned()), content, redacts: None }
}

fn server_name(server: usize) -> String {
    format!("s{server}.example")
}

/// The user number of `@user{n}:server`.
fn user_number(user_id: &str) -> Option<u32> {
    user_id.strip_prefix("@user")?.split(':').next()?.parse().ok()
}

const WORDS: &[&str] = &[
    "hello", "matrix", "room", "server", "state", "event", "lunch", "today", "deploy", "review", "the", "a", "is",
    "looks", "good", "merge", "fork", "tomorrow", "meeting", "coffee", "bug", "fixed", "why", "ok", "thanks",
];

impl<'a, F: FnMut(&Value)> Generator<'a, F> {
    pub fn new(cfg: &'a RoomConfig, sink: F) -> Result<Self> {
        let rv = RoomVersion::from_id(&cfg.room_version)?;
        if cfg.members < 2 {
            return Err(Error::invalid(Some("members"), "a room needs at least 2 members"));
        }
        if cfg.events < 1 {
            return Err(Error::invalid(Some("events"), "a room has at least its create event"));
        }
        if cfg.servers < 1 {
            return Err(Error::invalid(Some("servers"), "at least 1 server"));
        }
        if cfg.members > u32::MAX as usize {
            return Err(Error::invalid(Some("members"), "too many members"));
        }
        if !(0.0..=1.0).contains(&cfg.state_churn) {
            return Err(Error::invalid(Some("state_churn"), "state_churn must be between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&cfg.power_share) {
            return Err(Error::invalid(Some("power_share"), "power_share must be between 0 and 1"));
        }
        let user_ids = (0..cfg.members).map(|u| format!("@user{u}:{}", server_name(u % cfg.servers))).collect();
        let staff = cfg.members.min(cfg.servers.max(2));
        let mut rng = Rng::new(cfg.seed);
        let room_id = format!("!{}:{}", rng.alphanumeric(18), server_name(0));
        Ok(Generator {
            p: Picker { cfg, rv, rng, user_ids, staff, arrived: 1, pending: Vec::new(), emitted: 0 },
            sink,
            room_id: room_id.clone(),
            base: Base {
                state: StateMap::new(),
                membership: vec![Membership::None; cfg.members],
                power: PowerLevels::initial(BTreeMap::new()),
                join_rule: JoinRule::Invite,
            },
            branches: vec![Branch::new(0, Vec::new(), Vec::new())],
            plans: vec![Vec::new()],
            store: Store::default(),
            summary: RoomSummary {
                room_id,
                room_version: rv.id.to_owned(),
                events: 0,
                state_events: 0,
                forks: 0,
                merges: 0,
                max_depth: 0,
                final_joined_members: 0,
                kinds: BTreeMap::new(),
            },
        })
    }

    pub fn run(mut self) -> Result<RoomSummary> {
        self.create_room()?;
        let mut since_fork = 0usize;
        let width = self.p.cfg.fork_width;
        let depth = self.p.cfg.fork_depth;
        while self.p.emitted < self.p.cfg.events {
            let fork_size = width * depth + 1;
            if self.p.cfg.fork_every > 0
                && width >= 2
                && depth >= 1
                && since_fork >= self.p.cfg.fork_every
                && self.p.cfg.events - self.p.emitted >= fork_size
            {
                self.fork_and_merge()?;
                since_fork = 0;
            } else {
                self.choose_and_emit(0)?;
                self.fold_linear();
                since_fork += 1;
            }
        }
        self.summary.final_joined_members = self.base.membership.iter().filter(|m| **m == Membership::Join).count();
        Ok(self.summary)
    }

    fn choose_and_emit(&mut self, b: usize) -> Result<()> {
        let plan = self.plans.get_mut(b).and_then(Vec::pop);
        let draft = self.p.choose(&View { base: &self.base, branch: &self.branches[b] }, plan);
        self.emit(b, draft)
    }

    fn view(&self, b: usize) -> View<'_> {
        View { base: &self.base, branch: &self.branches[b] }
    }

    // ---- creation -------------------------------------------------------------------------

    fn create_room(&mut self) -> Result<()> {
        let version = self.p.rv.id;
        let creator = self.p.user_ids[0].clone();
        let create_content = if self.p.rv.implicit_room_creator {
            json!({"room_version": version})
        } else {
            json!({"creator": creator, "room_version": version})
        };
        let mut users = BTreeMap::new();
        if !self.p.rv.privileged_creators {
            // v12 (MSC4289): creators must not be listed; their power is implicit.
            users.insert(creator.clone(), 100);
        }
        for u in 1..self.p.staff {
            users.insert(self.p.user_ids[u].clone(), if u == 1 { 100 } else { 50 });
        }
        let power = PowerLevels::initial(users);
        let steps = [
            state_draft("create", 0, "m.room.create", "", create_content),
            state_draft("join", 0, "m.room.member", &creator, json!({"membership": "join", "displayname": "User 0"})),
            state_draft("power_levels", 0, "m.room.power_levels", "", power.to_content()),
            state_draft("join_rules", 0, "m.room.join_rules", "", json!({"join_rule": "public"})),
            state_draft("history_visibility", 0, "m.room.history_visibility", "", json!({"history_visibility": "shared"})),
            state_draft("name", 0, "m.room.name", "", json!({"name": "Generated room"})),
            state_draft("topic", 0, "m.room.topic", "", json!({"topic": "A room generated by roomgen"})),
        ];
        for draft in steps {
            if self.p.emitted >= self.p.cfg.events {
                break;
            }
            self.emit(0, draft)?;
            self.fold_linear();
        }
        Ok(())
    }


    // ---- forks ----------------------------------------------------------------------------

    fn fork_and_merge(&mut self) -> Result<()> {
        let width = self.p.cfg.fork_width;
        let main = self.branches.pop().ok_or_else(|| Error::invalid(None, "no branch to fork"))?;
        self.summary.forks += 1;
        let contested = {
            let view = View { base: &self.base, branch: &main };
            self.p.pick_joined_nonstaff(&view, None)
        };
        self.branches.clear();
        self.plans.clear();
        for i in 0..width {
            let server = (self.summary.forks + i) % self.p.cfg.servers;
            self.branches.push(Branch::new(server, main.tips.clone(), main.recent_messages.clone()));
            // Conflicts: one branch changes the contested user's power, another bans them and
            // changes a level, a third changes their profile (same member key as the ban).
            let plan = match (contested, i % 3) {
                (Some(u), 0) => vec![Planned::PowerForUser(u)],
                (Some(u), 1) => vec![Planned::Ban(u), Planned::TopicLevel],
                (Some(u), _) => vec![Planned::Displayname(u), Planned::TopicLevel],
                (None, _) => vec![Planned::TopicLevel],
            };
            // Power-level changes beyond the configured share become a change of the same key
            // space of another kind: the contested member's profile, or the topic.
            let plan = plan
                .into_iter()
                .map(|step| match step {
                    Planned::PowerForUser(u) if !self.p.keep_power_change() => Planned::Displayname(u),
                    Planned::TopicLevel if !self.p.keep_power_change() => Planned::Topic,
                    other => other,
                })
                .collect::<Vec<_>>();
            // Plans are popped from the back.
            self.plans.push(plan.into_iter().rev().collect());
        }
        for _ in 0..self.p.cfg.fork_depth {
            for b in 0..width {
                self.choose_and_emit(b)?;
            }
        }
        self.merge_branches()?;
        self.summary.merges += 1;
        self.choose_and_emit(0)?;
        self.fold_linear();
        Ok(())
    }

    fn merge_branches(&mut self) -> Result<()> {
        let mut keys: HashSet<(String, String)> = HashSet::new();
        for key in [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", "")] {
            keys.insert((key.0.to_owned(), key.1.to_owned()));
        }
        for br in &self.branches {
            for (key, id) in &br.state {
                keys.insert(key.clone());
                if let Some(pdu) = self.store.event(id) {
                    keys.insert(("m.room.member".to_owned(), pdu.sender.clone()));
                }
            }
        }
        let states: Vec<StateMap<String>> = (0..self.branches.len())
            .map(|b| {
                let view = self.view(b);
                keys.iter().filter_map(|k| view.state_id(k).map(|id| (k.clone(), id.clone()))).collect()
            })
            .collect();
        let resolved = resolve_branch_states(&self.p.rv, &states, &self.store)?;
        for key in &keys {
            let id = resolved.get(key);
            match id {
                Some(id) => {
                    self.base.state.insert(key.clone(), id.clone());
                }
                None => {
                    self.base.state.remove(key);
                }
            }
            let content = id.and_then(|id| self.store.event(id)).map(|p| &p.content);
            match key.0.as_str() {
                "m.room.member" => {
                    if let Some(u) = user_number(&key.1) {
                        let m = content
                            .and_then(|c| c.get("membership"))
                            .and_then(Value::as_str)
                            .map(Membership::parse)
                            .unwrap_or(Membership::None);
                        if let Some(slot) = self.base.membership.get_mut(u as usize) {
                            *slot = m;
                        }
                    }
                }
                "m.room.power_levels" => {
                    if let Some(c) = content {
                        self.base.power = PowerLevels::from_content(c);
                    }
                }
                "m.room.join_rules" => {
                    if let Some(rule) = content.and_then(|c| c.get("join_rule")).and_then(Value::as_str) {
                        self.base.join_rule = JoinRule::parse(rule);
                    }
                }
                _ => {}
            }
        }
        let mut tips: Vec<Tip> = Vec::new();
        let mut recent: Vec<(String, u32)> = Vec::new();
        for br in &self.branches {
            for t in &br.tips {
                if !tips.iter().any(|x| x.event_id == t.event_id) {
                    tips.push(t.clone());
                }
            }
            for m in &br.recent_messages {
                if !recent.contains(m) {
                    recent.push(m.clone());
                }
            }
        }
        let excess = recent.len().saturating_sub(RECENT_MESSAGES);
        recent.drain(..excess);
        self.branches = vec![Branch::new(0, tips, recent)];
        self.plans = vec![Vec::new()];
        Ok(())
    }

    /// Between forks there is one branch; its changes go straight into the base.
    fn fold_linear(&mut self) {
        if self.branches.len() != 1 {
            return;
        }
        let br = &mut self.branches[0];
        for (k, v) in br.state.drain() {
            self.base.state.insert(k, v);
        }
        for (u, m) in br.membership.drain() {
            if let Some(slot) = self.base.membership.get_mut(u as usize) {
                *slot = m;
            }
        }
        if let Some(p) = br.power.take() {
            self.base.power = p;
        }
        if let Some(j) = br.join_rule.take() {
            self.base.join_rule = j;
        }
    }

}

    // ---- choosing events ------------------------------------------------------------------

/// Chooses events that the auth rules allow against a branch's state.
struct Picker<'a> {
    cfg: &'a RoomConfig,
    rv: RoomVersion,
    rng: Rng,
    user_ids: Vec<String>,
    staff: usize,
    /// Users 0..arrived have had (or been the target of) a membership event.
    arrived: usize,
    /// Users that may be waiting in `invite` or `knock`.
    pending: Vec<u32>,
    emitted: usize,
}

impl Picker<'_> {

    fn is_staff(&self, u: u32) -> bool {
        (u as usize) < self.staff
    }

    fn level(&self, view: &View, u: u32) -> i64 {
        view.power().user_level(&self.user_ids[u as usize], self.rv.privileged_creators && u == 0)
    }

    /// A random joined user, mostly from `server` when given.
    fn pick_joined(&mut self, view: &View, server: Option<usize>) -> Option<u32> {
        let servers = self.cfg.servers;
        for _ in 0..16 {
            let u = match server {
                Some(s) if s < self.arrived && self.rng.chance(0.8) => {
                    let count = (self.arrived - s).div_ceil(servers);
                    s + self.rng.below(count) * servers
                }
                _ => self.rng.below(self.arrived),
            };
            if view.membership(u as u32) == Membership::Join {
                return Some(u as u32);
            }
        }
        None
    }

    fn pick_joined_nonstaff(&mut self, view: &View, server: Option<usize>) -> Option<u32> {
        for _ in 0..4 {
            if let Some(u) = self.pick_joined(view, server) {
                if !self.is_staff(u) {
                    return Some(u);
                }
            }
        }
        None
    }

    /// A joined user whose power level is at least `level`, preferring `server`'s users.
    fn pick_with_level(&mut self, view: &View, level: i64, server: usize) -> Option<u32> {
        if level <= view.power().users_default {
            let u = self.pick_joined(view, Some(server))?;
            return (self.level(view, u) >= level).then_some(u);
        }
        let mut candidates: Vec<u32> = view
            .power()
            .users
            .iter()
            .filter(|(_, l)| **l >= level)
            .filter_map(|(id, _)| user_number(id))
            .collect();
        if self.rv.privileged_creators {
            candidates.push(0);
        }
        candidates.retain(|u| (*u as usize) < self.cfg.members && view.membership(*u) == Membership::Join);
        if candidates.is_empty() {
            return None;
        }
        let local: Vec<u32> = candidates.iter().copied().filter(|u| *u as usize % self.cfg.servers == server).collect();
        if !local.is_empty() && self.rng.chance(0.7) {
            return Some(*self.rng.pick(&local));
        }
        Some(*self.rng.pick(&candidates))
    }

    /// Whether a drawn power-level change happens (see `RoomConfig::power_share`). With the
    /// default share of 1 no random number is drawn, so such rooms are what they always were.
    fn keep_power_change(&mut self) -> bool {
        self.cfg.power_share >= 1.0 || self.rng.chance(self.cfg.power_share)
    }

    fn arrival_overdue(&self) -> bool {
        let spread = (self.cfg.events * 6 / 10).max(1);
        let target = (self.cfg.members as u128 * (self.emitted as u128 + 1) / spread as u128) as usize;
        self.arrived < self.cfg.members && self.arrived < target.max(self.staff)
    }

    fn choose(&mut self, view: &View, plan: Option<Planned>) -> Draft {
        if let Some(plan) = plan {
            if let Some(d) = self.planned(view, plan) {
                return d;
            }
        }
        for _ in 0..8 {
            // Invitations and knocks are answered soon, as part of arriving rather than churn.
            let draft = if !self.pending.is_empty() && self.rng.chance(0.3) {
                self.process_pending(view)
            } else if self.arrival_overdue() {
                self.arrival(view)
            } else if self.rng.chance(self.cfg.state_churn) {
                self.state_change(view)
            } else if self.rng.chance(0.05) {
                self.redaction(view)
            } else {
                self.message(view)
            };
            if let Some(d) = draft {
                return d;
            }
        }
        self.creator_message()
    }

    fn member_draft(&self, kind: &'static str, sender: u32, target: u32, content: Value) -> Draft {
        Draft {
            kind,
            sender,
            event_type: "m.room.member",
            state_key: Some(self.user_ids[target as usize].clone()),
            content,
            redacts: None,
        }
    }

    fn text(&mut self, words: usize) -> String {
        let n = 1 + self.rng.below(words);
        (0..n).map(|_| *self.rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
    }

    fn creator_message(&mut self) -> Draft {
        let body = self.text(6);
        Draft { kind: "message", sender: 0, event_type: "m.room.message", state_key: None, content: json!({"msgtype": "m.text", "body": body}), redacts: None }
    }

    fn message(&mut self, view: &View) -> Option<Draft> {
        let server = view.branch.server;
        let sender = self.pick_joined(view, Some(server))?;
        let level = view.power().event_level("m.room.message", false);
        if self.level(view, sender) < level {
            return None;
        }
        let body = self.text(12);
        Some(Draft { kind: "message", sender, event_type: "m.room.message", state_key: None, content: json!({"msgtype": "m.text", "body": body}), redacts: None })
    }

    fn redaction(&mut self, view: &View) -> Option<Draft> {
        let server = view.branch.server;
        let recent = &view.branch.recent_messages;
        if recent.is_empty() {
            return None;
        }
        let (target, author) = recent[self.rng.below(recent.len())].clone();
        // Authors redact their own messages; moderators anyone's. (v1/v2 auth: the redact level,
        // or the same server as the redacted event.)
        let sender = if view.membership(author) == Membership::Join && self.rng.chance(0.6) {
            author
        } else {
            let level = view.power().redact;
            self.pick_with_level(view, level, server)?
        };
        if self.level(view, sender) < view.power().event_level("m.room.redaction", false) {
            return None;
        }
        let reason = self.text(3);
        let (content, redacts) = if self.rv.updated_redaction_rules {
            (json!({"redacts": target, "reason": reason}), None)
        } else {
            (json!({"reason": reason}), Some(target.clone()))
        };
        Some(Draft { kind: "redaction", sender, event_type: "m.room.redaction", state_key: None, content, redacts })
    }

    /// The next new user's first membership event.
    fn arrival(&mut self, view: &View) -> Option<Draft> {
        let u = self.arrived as u32;
        let server = view.branch.server;
        let draft = self.enter(view, u, server)?;
        self.arrived += 1;
        Some(draft)
    }

    /// `u` (not joined, not banned) starts to come in: a join, a knock, or an invite.
    fn enter(&mut self, view: &View, u: u32, server: usize) -> Option<Draft> {
        let name = format!("User {u}");
        let direct = self.is_staff(u) || self.rng.chance(0.8);
        match view.join_rule() {
            JoinRule::Public if direct => {
                Some(self.member_draft("join", u, u, json!({"membership": "join", "displayname": name})))
            }
            JoinRule::Knock if !self.is_staff(u) => {
                self.pending.push(u);
                Some(self.member_draft("knock", u, u, json!({"membership": "knock", "reason": "let me in", "displayname": name})))
            }
            _ => {
                let invite_level = view.power().invite;
                let inviter = self.pick_with_level(view, invite_level, server)?;
                self.pending.push(u);
                Some(self.member_draft("invite", inviter, u, json!({"membership": "invite", "displayname": name})))
            }
        }
    }

    fn process_pending(&mut self, view: &View) -> Option<Draft> {
        let server = view.branch.server;
        let i = self.rng.below(self.pending.len());
        let u = self.pending[i];
        match view.membership(u) {
            Membership::Invite => {
                self.pending.swap_remove(i);
                if self.rng.chance(0.9) {
                    Some(self.member_draft("join", u, u, json!({"membership": "join", "displayname": format!("User {u}")})))
                } else {
                    Some(self.member_draft("leave", u, u, json!({"membership": "leave"})))
                }
            }
            Membership::Knock => {
                if self.rng.chance(0.85) {
                    let level = view.power().invite;
                    let inviter = self.pick_with_level(view, level, server)?;
                    Some(self.member_draft("invite", inviter, u, json!({"membership": "invite"})))
                } else {
                    let level = view.power().kick;
                    let kicker = self.pick_with_level(view, level, server)?;
                    if self.level(view, kicker) <= self.level(view, u) {
                        return None;
                    }
                    self.pending.swap_remove(i);
                    Some(self.member_draft("kick", kicker, u, json!({"membership": "leave", "reason": "knock declined"})))
                }
            }
            _ => {
                self.pending.swap_remove(i);
                None
            }
        }
    }

    fn state_change(&mut self, view: &View) -> Option<Draft> {
        const WEIGHTS: [(u8, usize); 12] =
            [(0, 8), (1, 3), (2, 2), (3, 1), (4, 4), (5, 5), (6, 2), (7, 2), (8, 1), (9, 6), (10, 5), (11, 2)];
        let total: usize = WEIGHTS.iter().map(|w| w.1).sum();
        let mut roll = self.rng.below(total);
        let mut action = 0;
        for (a, w) in WEIGHTS {
            if roll < w {
                action = a;
                break;
            }
            roll -= w;
        }
        let server = view.branch.server;
        if matches!(action, 4 | 11) && !self.keep_power_change() {
            action = 0;
        }
        match action {
            0 => {
                let topic = self.text(8);
                self.simple_state(view, server, "topic", "m.room.topic", json!({"topic": topic}))
            }
            1 => {
                let name = self.text(3);
                self.simple_state(view, server, "name", "m.room.name", json!({"name": name}))
            }
            2 => {
                let v = *self.rng.pick(&["shared", "invited", "joined", "world_readable"]);
                self.simple_state(view, server, "history_visibility", "m.room.history_visibility", json!({"history_visibility": v}))
            }
            3 => {
                let next = match view.join_rule() {
                    JoinRule::Public if self.rv.knock_join_rule => JoinRule::Knock,
                    JoinRule::Public => JoinRule::Invite,
                    _ => JoinRule::Public,
                };
                self.simple_state(view, server, "join_rules", "m.room.join_rules", json!({"join_rule": next.as_str()}))
            }
            4 => {
                let target = self.pick_joined_nonstaff(view, None)?;
                self.power_for_user(view, server, target)
            }
            5 => {
                let u = self.pick_joined_nonstaff(view, Some(server))?;
                Some(self.member_draft("leave", u, u, json!({"membership": "leave"})))
            }
            6 => {
                let target = self.pick_joined_nonstaff(view, None)?;
                self.kick(view, server, target)
            }
            7 => {
                let target = self.pick_joined_nonstaff(view, None)?;
                self.ban(view, server, target)
            }
            8 => {
                // Unban someone: needs both the ban and the kick level.
                let target = self.rng.below(self.arrived) as u32;
                if view.membership(target) != Membership::Ban {
                    return None;
                }
                let level = view.power().ban.max(view.power().kick);
                let sender = self.pick_with_level(view, level, server)?;
                if self.level(view, sender) <= self.level(view, target) {
                    return None;
                }
                Some(self.member_draft("unban", sender, target, json!({"membership": "leave"})))
            }
            9 => {
                let u = self.pick_joined(view, Some(server))?;
                self.displayname(u)
            }
            10 => {
                // A former member comes back.
                let u = self.rng.below(self.arrived) as u32;
                if !matches!(view.membership(u), Membership::Leave) {
                    return None;
                }
                self.enter(view, u, server)
            }
            _ => self.topic_level(view, server),
        }
    }

    fn simple_state(&mut self, view: &View, server: usize, kind: &'static str, event_type: &'static str, content: Value) -> Option<Draft> {
        let level = view.power().event_level(event_type, true);
        let sender = self.pick_with_level(view, level, server)?;
        Some(state_draft(kind, sender, event_type, "", content))
    }

    fn kick(&mut self, view: &View, server: usize, target: u32) -> Option<Draft> {
        let sender = self.pick_with_level(view, view.power().kick, server)?;
        if self.level(view, sender) <= self.level(view, target) || view.membership(target) == Membership::Ban {
            return None;
        }
        Some(self.member_draft("kick", sender, target, json!({"membership": "leave", "reason": "kicked"})))
    }

    fn ban(&mut self, view: &View, server: usize, target: u32) -> Option<Draft> {
        let sender = self.pick_with_level(view, view.power().ban, server)?;
        if self.level(view, sender) <= self.level(view, target) {
            return None;
        }
        Some(self.member_draft("ban", sender, target, json!({"membership": "ban", "reason": "spam"})))
    }

    fn displayname(&mut self, u: u32) -> Option<Draft> {
        let name = format!("{} {u}", self.rng.pick(&["Alice", "Bob", "Carol", "Dave", "Eve", "Mallory", "Trent"]));
        Some(self.member_draft("displayname", u, u, json!({"membership": "join", "displayname": name})))
    }

    /// Promotes `target` to moderator, or demotes them back to the default.
    fn power_for_user(&mut self, view: &View, server: usize, target: u32) -> Option<Draft> {
        let pl = view.power();
        let sender = self.pick_with_level(view, pl.event_level("m.room.power_levels", true), server)?;
        let sender_level = self.level(view, sender);
        let target_id = &self.user_ids[target as usize];
        // Auth rules: a changed user entry's old and new values must be below / at most the
        // sender's level.
        if self.level(view, target) >= sender_level || 50 > sender_level {
            return None;
        }
        let mut next = pl.clone();
        if next.users.remove(target_id).is_none() {
            let promoted: Vec<String> = next
                .users
                .iter()
                .filter(|(id, level)| **level < sender_level && user_number(id).is_some_and(|u| !self.is_staff(u)))
                .map(|(id, _)| id.clone())
                .collect();
            if promoted.len() >= MAX_PROMOTED {
                // Keep the power levels event small: a crowded moderator list loses one first.
                let demoted = self.rng.pick(&promoted).clone();
                next.users.remove(&demoted);
            }
            next.users.insert(target_id.clone(), 50);
        }
        Some(state_draft("power_levels", sender, "m.room.power_levels", "", next.to_content()))
    }

    /// Toggles who may set the topic (moderators or everyone).
    fn topic_level(&mut self, view: &View, server: usize) -> Option<Draft> {
        let pl = view.power();
        let sender = self.pick_with_level(view, pl.event_level("m.room.power_levels", true), server)?;
        if self.level(view, sender) < 50 {
            return None;
        }
        let mut next = pl.clone();
        let now = next.event_level("m.room.topic", true);
        next.events.insert("m.room.topic".to_owned(), if now > 0 { 0 } else { 50 });
        Some(state_draft("power_levels", sender, "m.room.power_levels", "", next.to_content()))
    }

    fn planned(&mut self, view: &View, plan: Planned) -> Option<Draft> {
        let server = view.branch.server;
        match plan {
            Planned::PowerForUser(u) => self.power_for_user(view, server, u),
            Planned::Ban(u) => self.ban(view, server, u),
            Planned::Displayname(u) if view.membership(u) == Membership::Join => self.displayname(u),
            Planned::Displayname(_) => None,
            Planned::TopicLevel => self.topic_level(view, server),
            Planned::Topic => {
                let topic = self.text(8);
                self.simple_state(view, server, "topic", "m.room.topic", json!({"topic": topic}))
            }
        }
    }

}

impl<'a, F: FnMut(&Value)> Generator<'a, F> {
    // ---- emitting -------------------------------------------------------------------------

    fn reference(&self, id: &str, ref_hash: Option<&String>) -> Value {
        match self.p.rv.event_format {
            EventFormat::V1 => json!([id, {"sha256": ref_hash.cloned().unwrap_or_default()}]),
            _ => Value::String(id.to_owned()),
        }
    }

    fn emit(&mut self, b: usize, draft: Draft) -> Result<()> {
        let sender_id = self.p.user_ids[draft.sender as usize].clone();
        let is_create = draft.event_type == "m.room.create";
        let prev = self.branches[b].tips.clone();
        let depth = prev.iter().map(|t| t.depth).max().unwrap_or(0) + 1;
        let membership = draft.content.get("membership").and_then(Value::as_str).map(str::to_owned);
        let auth_ids = select_auth_events(
            &self.view(b),
            !self.p.rv.room_id_from_create_event,
            draft.event_type,
            draft.state_key.as_deref(),
            membership.as_deref(),
            &sender_id,
        );
        let mut obj = Map::new();
        let auth_refs: Vec<Value> = auth_ids.iter().map(|id| self.reference(id, self.store.ref_hashes.get(id))).collect();
        let prev_refs: Vec<Value> = prev.iter().map(|t| self.reference(&t.event_id, t.ref_hash.as_ref())).collect();
        obj.insert("auth_events".into(), Value::Array(auth_refs));
        obj.insert("content".into(), draft.content.clone());
        obj.insert("depth".into(), json!(depth));
        self.summary.events += 1;
        let ts = FIRST_TS + self.p.emitted as i64 * 1000 + self.p.rng.below(1000) as i64;
        obj.insert("origin_server_ts".into(), json!(ts));
        obj.insert("prev_events".into(), Value::Array(prev_refs));
        if !(is_create && self.p.rv.room_id_from_create_event) {
            obj.insert("room_id".into(), Value::String(self.room_id.clone()));
        }
        obj.insert("sender".into(), Value::String(sender_id.clone()));
        if let Some(k) = &draft.state_key {
            obj.insert("state_key".into(), Value::String(k.clone()));
        }
        obj.insert("type".into(), Value::String(draft.event_type.to_owned()));
        if let Some(r) = &draft.redacts {
            obj.insert("redacts".into(), Value::String(r.clone()));
        }
        if self.p.rv.event_format == EventFormat::V1 {
            let server = sender_id.split(':').nth(1).unwrap_or("s0.example");
            let id = format!("${}:{}", self.p.rng.alphanumeric(18), server);
            obj.insert("event_id".into(), Value::String(id));
        }
        let event = hashes::with_content_hash(Value::Object(obj))?;
        let event_id = hashes::event_id(&event, &self.p.rv)?;
        let ref_hash = match self.p.rv.event_format {
            EventFormat::V1 => Some(STANDARD_NO_PAD.encode(hashes::reference_hash_bytes(&event, &self.p.rv)?)),
            _ => None,
        };
        if is_create && self.p.rv.room_id_from_create_event {
            self.room_id = hashes::room_id_from_create_event(&event, &self.p.rv)?;
            self.summary.room_id = self.room_id.clone();
        }
        (self.sink)(&event);
        self.p.emitted += 1;
        self.summary.max_depth = self.summary.max_depth.max(depth);
        *self.summary.kinds.entry(draft.kind.to_owned()).or_insert(0) += 1;

        let branch = &mut self.branches[b];
        branch.tips = vec![Tip { event_id: event_id.clone(), ref_hash: ref_hash.clone(), depth }];
        match draft.state_key {
            Some(state_key) => {
                self.summary.state_events += 1;
                let content = match draft.content {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                match draft.event_type {
                    "m.room.member" => {
                        let m = membership.as_deref().map(Membership::parse).unwrap_or(Membership::None);
                        if let Some(u) = user_number(&state_key) {
                            branch.membership.insert(u, m);
                        }
                    }
                    "m.room.power_levels" => branch.power = Some(PowerLevels::from_content(&content)),
                    "m.room.join_rules" => {
                        branch.join_rule =
                            content.get("join_rule").and_then(Value::as_str).map(JoinRule::parse);
                    }
                    _ => {}
                }
                branch.state.insert((draft.event_type.to_owned(), state_key.clone()), event_id.clone());
                if let Some(h) = ref_hash {
                    self.store.ref_hashes.insert(event_id.clone(), h);
                }
                let pdu = Pdu {
                    event_id: event_id.clone(),
                    room_id: self.room_id.clone(),
                    sender: sender_id,
                    event_type: draft.event_type.to_owned(),
                    state_key: Some(state_key),
                    content,
                    prev_events: prev.into_iter().map(|t| t.event_id).collect(),
                    auth_events: auth_ids,
                    depth,
                    origin_server_ts: ts,
                    redacts: None,
                };
                self.store.events.insert(event_id, pdu);
            }
            None => {
                if draft.event_type == "m.room.redaction" {
                    let target = draft.redacts.as_deref().or_else(|| draft.content.get("redacts").and_then(Value::as_str));
                    branch.recent_messages.retain(|(id, _)| Some(id.as_str()) != target);
                }
                if draft.event_type == "m.room.message" {
                    branch.recent_messages.push((event_id, draft.sender));
                    if branch.recent_messages.len() > RECENT_MESSAGES {
                        branch.recent_messages.remove(0);
                    }
                }
            }
        }
        Ok(())
    }
}
