//! The auth graph of one resolution: every event reachable from the state sets through
//! `auth_events`, numbered so the algorithms work on integers, checked for missing events and
//! cycles once.

use std::collections::HashMap;

use super::EventStore;
use crate::error::{Error, Result};
use crate::event::Pdu;

pub(super) struct AuthGraph<'a> {
    pub events: Vec<&'a Pdu>,
    pub index: HashMap<&'a str, usize>,
    /// `auth[n]`: the auth events of event n.
    pub auth: Vec<Vec<usize>>,
}

impl<'a> AuthGraph<'a> {
    /// Collects `roots` and everything their auth events reach.
    pub fn build(store: &'a dyn EventStore, roots: impl IntoIterator<Item = &'a str>) -> Result<AuthGraph<'a>> {
        let mut g = AuthGraph { events: Vec::new(), index: HashMap::new(), auth: Vec::new() };
        let mut todo: Vec<&'a str> = Vec::new();
        for r in roots {
            g.add(store, r, None)?;
            todo.push(r);
        }
        let mut expanded = vec![false; g.events.len()];
        while let Some(id) = todo.pop() {
            let n = g.index[id];
            if expanded.get(n).copied().unwrap_or(false) {
                continue;
            }
            if expanded.len() <= n {
                expanded.resize(n + 1, false);
            }
            expanded[n] = true;
            let ev = g.events[n];
            let mut edges = Vec::with_capacity(ev.auth_events.len());
            for a in &ev.auth_events {
                let m = g.add(store, a, Some(&ev.event_id))?;
                edges.push(m);
                todo.push(g.events[m].event_id.as_str());
            }
            g.auth[n] = edges;
        }
        g.check_acyclic()?;
        Ok(g)
    }

    fn add(&mut self, store: &'a dyn EventStore, id: &str, referenced_by: Option<&str>) -> Result<usize> {
        if let Some(&n) = self.index.get(id) {
            return Ok(n);
        }
        let ev = store.event(id).ok_or_else(|| match referenced_by {
            Some(by) => Error::not_found(format!("auth event {id} of {by} is not known")),
            None => Error::not_found(format!("event {id} is not known")),
        })?;
        let n = self.events.len();
        self.events.push(ev);
        self.index.insert(ev.event_id.as_str(), n);
        self.auth.push(Vec::new());
        Ok(n)
    }

    /// A DFS over the whole graph: auth_events must never loop back.
    fn check_acyclic(&self) -> Result<()> {
        // 0 = unvisited, 1 = on the stack, 2 = done.
        let mut color = vec![0u8; self.events.len()];
        for start in 0..self.events.len() {
            if color[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            color[start] = 1;
            while let Some(&mut (n, ref mut next)) = stack.last_mut() {
                if let Some(&m) = self.auth[n].get(*next) {
                    *next += 1;
                    match color[m] {
                        0 => {
                            color[m] = 1;
                            stack.push((m, 0));
                        }
                        1 => {
                            return Err(Error::invalid(
                                Some("auth_events"),
                                format!("auth_events form a cycle through {} and {}", self.events[n].event_id, self.events[m].event_id),
                            ))
                        }
                        _ => {}
                    }
                } else {
                    color[n] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// Marks everything reachable from `starts` through auth events; `include_starts` says
    /// whether the starting events count themselves (they still count when another start
    /// reaches them).
    pub fn reach(&self, starts: &[usize], include_starts: bool) -> Vec<bool> {
        let mut seen = vec![false; self.events.len()];
        let mut todo: Vec<usize> = Vec::new();
        let visit = |m: usize, seen: &mut Vec<bool>, todo: &mut Vec<usize>| {
            if !seen[m] {
                seen[m] = true;
                todo.push(m);
            }
        };
        for &s in starts {
            if include_starts {
                visit(s, &mut seen, &mut todo);
            } else {
                for &m in &self.auth[s] {
                    visit(m, &mut seen, &mut todo);
                }
            }
        }
        while let Some(n) = todo.pop() {
            for &m in &self.auth[n] {
                visit(m, &mut seen, &mut todo);
            }
        }
        seen
    }

    /// The `m.room.power_levels` event among the auth events of `n`.
    pub fn power_levels_auth(&self, n: usize) -> Option<usize> {
        self.auth[n].iter().copied().find(|&m| self.events[m].event_type == "m.room.power_levels" && self.events[m].state_key.as_deref() == Some(""))
    }

    /// The `m.room.create` event among the auth events of `n`.
    pub fn create_auth(&self, n: usize) -> Option<usize> {
        self.auth[n].iter().copied().find(|&m| self.events[m].event_type == "m.room.create")
    }
}
