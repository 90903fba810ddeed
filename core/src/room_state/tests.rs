use super::memory::MemoryStore;
use super::*;

fn e(t: i64, k: i64, ev: i64) -> Entry {
    Entry { type_nid: t, state_key_nid: k, event_nid: ev }
}

#[test]
fn equal_states_share_a_snapshot_and_no_op_changes_keep_it() {
    let mut s = MemoryStore::default();
    let empty = s.save_snapshot(&[], Vec::new(), StateHash::default(), 0).unwrap();
    let a = apply_change(&mut s, empty, vec![e(1, 1, 10)]).unwrap();
    let b = apply_change(&mut s, a, vec![e(2, 1, 11)]).unwrap();
    // The same state reached another way: the same snapshot.
    let c = apply_change(&mut s, empty, vec![e(2, 1, 11), e(1, 1, 10)]).unwrap();
    assert_eq!(b, c);
    assert_eq!(apply_change(&mut s, b, vec![e(2, 1, 11)]).unwrap(), b);
    // Removing a key and putting it back returns to the same snapshot.
    let d = apply_change(&mut s, b, vec![e(2, 1, 0)]).unwrap();
    assert_eq!(d, a);
    assert_eq!((s.snapshot(a).unwrap().size, s.snapshot(b).unwrap().size), (1, 2));
    // Removing a key that is not there changes nothing.
    assert_eq!(apply_change(&mut s, a, vec![e(3, 1, 0)]).unwrap(), a);
    assert_eq!(s.lookup(b, &[(1, 1), (2, 1), (3, 1)]).unwrap(), vec![Some(10), Some(11), None]);
}

#[test]
fn many_changes_keep_few_blocks() {
    let mut s = MemoryStore::default();
    let mut snap = s.save_snapshot(&[], Vec::new(), StateHash::default(), 0).unwrap();
    for i in 1..=5000 {
        snap = apply_change(&mut s, snap, vec![e(5, i, i)]).unwrap();
    }
    let blocks = s.snapshot(snap).unwrap().blocks.len();
    assert!(blocks <= 14, "{blocks} blocks for 5000 entries");
    assert_eq!(s.full_state(snap).unwrap().len(), 5000);
    assert_eq!(s.snapshot(snap).unwrap().size, 5000);
    // Each entry is copied about log2(5000) times, not 5000.
    assert!(s.entries_written < 5000 * 16, "{} entries written", s.entries_written);
}

mod batch {
    use super::super::memory::MemoryStore;
    use super::super::{admit_batch, dag_order, BatchError, BatchOutcome, Candidate, KnownEvents, Mode, Outcome, RoomTips};
    use crate::error::ErrorKind;
    use crate::event::Pdu;
    use crate::room_version::RoomVersion;
    use serde_json::{json, Value};
    use std::collections::HashMap;

    const ROOM: i64 = 1;

    fn pdu(id: &str, event_type: &str, state_key: Option<&str>, content: Value, prevs: &[&str], auths: &[&str], depth: i64) -> Pdu {
        Pdu {
            event_id: id.to_owned(),
            room_id: "!r:x".to_owned(),
            sender: "@a:x".to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            content: content.as_object().unwrap().clone(),
            prev_events: prevs.iter().map(|p| p.to_string()).collect(),
            auth_events: auths.iter().map(|p| p.to_string()).collect(),
            depth,
            origin_server_ts: depth,
            redacts: None,
        }
    }

    /// A room that forks after its third event and merges again.
    fn forked_room() -> Vec<Pdu> {
        let ca = ["$create", "$join"];
        vec![
            pdu("$create", "m.room.create", Some(""), json!({"creator": "@a:x", "room_version": "10"}), &[], &[], 1),
            pdu("$join", "m.room.member", Some("@a:x"), json!({"membership": "join"}), &["$create"], &["$create"], 2),
            pdu("$m1", "m.room.message", None, json!({"body": "1"}), &["$join"], &ca, 3),
            pdu("$left", "m.room.topic", Some(""), json!({"topic": "left"}), &["$m1"], &ca, 4),
            pdu("$right", "m.room.message", None, json!({"body": "right"}), &["$m1"], &ca, 4),
            pdu("$merge", "m.room.message", None, json!({"body": "merge"}), &["$left", "$right"], &ca, 5),
        ]
    }

    struct Batch {
        store: MemoryStore,
        known: KnownEvents,
        tips: HashMap<i64, RoomTips>,
        rv: RoomVersion,
        /// Event IDs stored in another room.
        elsewhere: Vec<String>,
    }

    impl Batch {
        fn new() -> Self {
            Batch {
                store: MemoryStore::default(),
                known: KnownEvents::new(),
                tips: HashMap::new(),
                rv: RoomVersion::from_id("10").unwrap(),
                elsewhere: Vec::new(),
            }
        }

        /// Admits `pdus` as one batch, numbering new events as the shell does.
        fn admit(&mut self, pdus: &[Pdu], as_outliers: bool) -> Result<Vec<Option<Outcome>>, BatchError> {
            self.admit_as(pdus, if as_outliers { Mode::Outliers } else { Mode::Live }, None).map(|b| b.outcomes)
        }

        /// Admits `pdus` as one batch in `mode`, the first with `supplied` state (event IDs).
        fn admit_as(&mut self, pdus: &[Pdu], mode: Mode, supplied: Option<&[&str]>) -> Result<BatchOutcome, BatchError> {
            let supplied: Option<Vec<i64>> = supplied.map(|ids| ids.iter().map(|id| self.nid(id)).collect());
            // New NIDs ascend in DAG order, as the shell assigns them.
            let refs: Vec<(&str, i64, Vec<&str>)> = pdus
                .iter()
                .map(|p| (p.event_id.as_str(), ROOM, p.prev_events.iter().chain(&p.auth_events).map(String::as_str).collect()))
                .collect();
            let mut next = self.store.next_event_nid();
            let mut new_nids: HashMap<usize, i64> = HashMap::new();
            for i in dag_order(&refs) {
                if !self.known.contains_key(&(pdus[i].event_id.clone(), ROOM)) {
                    new_nids.insert(i, next);
                    next += 1;
                }
            }
            let candidates: Vec<Candidate> = pdus
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (type_nid, state_key_nid) = self.store.assign_nids(p);
                    let new_nid = new_nids.get(&i).copied();
                    let supplied_state = if i == 0 { supplied.as_deref() } else { None };
                    let followed = self.store.is_followed(&p.event_id);
                    Candidate { position: i, room_nid: ROOM, rv: &self.rv, pdu: p, type_nid, state_key_nid, new_nid, supplied_state, followed }
                })
                .collect();
            admit_batch(&mut self.store, &candidates, &mut self.known, &mut self.tips, mode, &|id| self.elsewhere.iter().any(|e| e == id))
        }

        fn nid(&self, id: &str) -> i64 {
            self.known[&(id.to_owned(), ROOM)].nid
        }

        fn extremities(&self) -> Vec<i64> {
            self.tips[&ROOM].extremities.keys().copied().collect()
        }
    }

    #[test]
    fn a_batch_is_admitted_in_order_and_keeps_the_forward_extremities() {
        let room = forked_room();
        let mut b = Batch::new();
        let out = b.admit(&room[..5], false).unwrap();
        assert!(out.iter().all(|o| matches!(o, Some(Outcome { rejection: None, soft_failure: None, outlier: false, .. }))), "{out:?}");
        // NIDs ascend in batch order; both sides of the fork are extremities.
        let nids: Vec<i64> = room[..5].iter().map(|p| b.nid(&p.event_id)).collect();
        assert!(nids.windows(2).all(|w| w[0] < w[1]), "{nids:?}");
        assert_eq!(b.extremities(), vec![b.nid("$left"), b.nid("$right")]);
        // Only state events carry an auth chain to store.
        assert_eq!(out[3].as_ref().unwrap().stored_auth_chain.as_deref(), Some(&[b.nid("$create"), b.nid("$join")][..]));
        assert_eq!(out[4].as_ref().unwrap().stored_auth_chain, None);
        let out = b.admit(&room[5..], false).unwrap();
        assert!(out[0].as_ref().unwrap().rejection.is_none());
        assert_eq!(b.extremities(), vec![b.nid("$merge")]);
        // The merge's state holds the topic from the left side, and so does the current state.
        let current = b.tips[&ROOM].current.unwrap();
        assert_eq!(Some(current), out[0].as_ref().unwrap().state_after);
        let topic = b.store.full_state(current).unwrap().iter().any(|e| e.event_nid == b.nid("$left"));
        assert!(topic, "the topic is in the current state");
    }

    #[test]
    fn stored_events_are_duplicates_and_missing_references_name_their_position() {
        let room = forked_room();
        let mut b = Batch::new();
        b.admit(&room[..3], false).unwrap();
        let again = b.admit(&room[..4], false).unwrap();
        assert_eq!(again[..3], [None, None, None]);
        assert!(again[3].is_some());
        // An unknown auth event: an error about that element, nothing admitted by it.
        let mut orphan = room[4].clone();
        orphan.event_id = "$orphan".into();
        orphan.auth_events.push("$nowhere".into());
        let e = b.admit(&[room[4].clone(), orphan], false).unwrap_err();
        assert_eq!((e.position, e.error.kind), (Some(1), ErrorKind::MissingReferences));
        assert!(e.error.message.contains("$nowhere"), "{}", e.error.message);
        // An unknown prev event likewise.
        let mut orphan = room[5].clone();
        orphan.prev_events = vec!["$elsewhere".into()];
        let e = Batch::new().admit(&[room[0].clone(), room[1].clone(), orphan], false).unwrap_err();
        assert_eq!((e.position, e.error.kind), (Some(2), ErrorKind::MissingReferences));
    }

    #[test]
    fn an_outlier_gets_its_state_when_it_arrives_again_with_its_prev_events() {
        let room = forked_room();
        let mut b = Batch::new();
        b.admit(&room[..2], false).unwrap();
        let out = b.admit(&room[2..3], true).unwrap();
        let first = out[0].clone().unwrap();
        assert!(first.outlier && first.state_after.is_none() && !first.upgrade);
        // As an outlier again: a duplicate. With state: an upgrade, same NID.
        assert_eq!(b.admit(&room[2..3], true).unwrap(), vec![None]);
        let up = b.admit(&room[2..3], false).unwrap()[0].clone().unwrap();
        assert!(up.upgrade && !up.outlier && up.state_after.is_some());
        assert_eq!(up.nid, first.nid);
        assert_eq!(up.stored_auth_chain, None);
        assert_eq!(b.extremities(), vec![first.nid]);
    }

    #[test]
    fn an_event_that_fails_its_auth_events_is_rejected_and_not_an_extremity() {
        let room = forked_room();
        let mut b = Batch::new();
        // Sent by a user who never joined.
        let mut stranger = room[2].clone();
        stranger.event_id = "$stranger".into();
        stranger.sender = "@b:y".into();
        let out = b.admit(&[room[0].clone(), room[1].clone(), stranger], false).unwrap();
        assert!(out[2].as_ref().unwrap().rejection.is_some(), "{out:?}");
        assert_eq!(b.extremities(), vec![b.nid("$join")]);
        assert!(b.known[&("$stranger".to_owned(), ROOM)].excluded);
    }

    #[test]
    fn an_auth_event_of_another_room_rejects_the_event_instead_of_failing_the_batch() {
        let room = forked_room();
        let mut b = Batch::new();
        b.admit(&room[..3], false).unwrap();
        b.elsewhere.push("$other_room_create".into());
        let mut crossed = room[3].clone();
        crossed.event_id = "$crossed".into();
        crossed.auth_events.push("$other_room_create".into());
        let out = b.admit(&[crossed.clone()], false).unwrap();
        let o = out[0].clone().unwrap();
        assert!(o.rejection.as_deref().is_some_and(|r| r.contains("$other_room_create") && r.contains("another room")), "{o:?}");
        // Rejected: the state does not change and the event is no extremity.
        assert_eq!(o.state_before, o.state_after);
        assert_eq!(b.extremities(), vec![b.nid("$m1")]);
        // As an outlier likewise; an auth event known nowhere still fails the batch.
        crossed.event_id = "$crossed_outlier".into();
        assert!(b.admit(&[crossed.clone()], true).unwrap()[0].as_ref().unwrap().rejection.is_some());
        crossed.event_id = "$crossed_unknown".into();
        crossed.auth_events.push("$nowhere".into());
        assert_eq!(b.admit(&[crossed], false).unwrap_err().error.kind, ErrorKind::MissingReferences);
    }

    /// A batch given in reverse order (as /backfill lists it) is admitted in DAG order.
    #[test]
    fn a_batch_in_any_order_is_admitted_in_dag_order() {
        let room = forked_room();
        let mut ordered = Batch::new();
        ordered.admit(&room, false).unwrap();
        let mut reversed = Batch::new();
        let rev: Vec<Pdu> = room.iter().rev().cloned().collect();
        let out = reversed.admit(&rev, false).unwrap();
        assert!(out.iter().all(|o| o.as_ref().is_some_and(|o| o.rejection.is_none() && !o.outlier)), "{out:?}");
        let state = |b: &Batch| b.store.full_state(b.tips[&ROOM].current.unwrap()).unwrap().len();
        assert_eq!(state(&reversed), state(&ordered));
        assert_eq!(reversed.extremities(), vec![reversed.nid("$merge")]);
        // Auth events have smaller NIDs than the events citing them (resolution relies on it).
        for p in &room {
            for a in &p.auth_events {
                assert!(reversed.nid(a) < reversed.nid(&p.event_id), "{a} before {}", p.event_id);
            }
        }
    }

    /// Joining part-way through: the auth chain and state as outliers, then the event with the
    /// state before it given; its prev events are not stored, later events build on it.
    #[test]
    fn an_event_with_supplied_state_needs_no_prev_events() {
        let room = forked_room();
        let mut full = Batch::new();
        full.admit(&room, false).unwrap();
        let mut b = Batch::new();
        // The state before $merge: create, join, the topic.
        b.admit(&[room[3].clone(), room[1].clone(), room[0].clone()], true).unwrap();
        let state = ["$create", "$join", "$left"];
        let out = b.admit_as(&room[5..6], Mode::Live, Some(&state)).unwrap().outcomes;
        let merge = out[0].clone().unwrap();
        assert!(merge.rejection.is_none() && !merge.outlier && merge.state_before.is_some(), "{merge:?}");
        let ids = |b: &Batch, snap: i64| -> Vec<String> {
            let mut v: Vec<String> =
                b.store.full_state(snap).unwrap().iter().map(|e| b.store.event_by_nid(e.event_nid).unwrap().pdu.event_id.clone()).collect();
            v.sort();
            v
        };
        let full_merge = full.known[&("$merge".to_owned(), ROOM)].state_after.unwrap();
        assert_eq!(ids(&b, merge.state_after.unwrap()), ids(&full, full_merge));
        // It is the room's extremity and current state; its stored prev ($left, an outlier)
        // does not stay one.
        assert_eq!(b.extremities(), vec![b.nid("$merge")]);
        assert_eq!(b.tips[&ROOM].current, merge.state_after);
        let next = pdu("$after", "m.room.message", None, json!({"body": "after"}), &["$merge"], &["$create", "$join"], 6);
        assert!(b.admit(&[next], false).unwrap()[0].as_ref().unwrap().rejection.is_none());
        assert_eq!(b.extremities(), vec![b.nid("$after")]);
        // A state that is not one: a message in it, or two events for one key.
        let mut bad = room[5].clone();
        bad.event_id = "$bad".into();
        b.admit(&room[2..3], true).unwrap();
        let e = b.admit_as(&[bad.clone()], Mode::Live, Some(&["$create", "$m1"])).unwrap_err();
        assert_eq!(e.error.kind, ErrorKind::InvalidParameter);
        assert!(e.error.message.contains("$m1 is not a state event"), "{}", e.error.message);
        let mut other_topic = room[3].clone();
        other_topic.event_id = "$left2".into();
        b.admit(&[other_topic], true).unwrap();
        let e = b.admit_as(&[bad], Mode::Live, Some(&["$create", "$left", "$left2"])).unwrap_err();
        assert!(e.error.message.contains("both the state for (m.room.topic"), "{}", e.error.message);
    }

    /// Backfilled history, newest first and in pieces: events whose prev events are not stored
    /// yet are outliers, and get their state once the history before them arrives; none of it
    /// moves the extremities or the current state.
    #[test]
    fn backfilled_events_get_their_state_when_the_history_before_them_arrives() {
        let room = forked_room();
        let mut full = Batch::new();
        full.admit(&room, false).unwrap();
        let mut b = Batch::new();
        b.admit(&[room[3].clone(), room[1].clone(), room[0].clone()], true).unwrap();
        b.admit_as(&room[5..6], Mode::Live, Some(&["$create", "$join", "$left"])).unwrap();
        let tips = b.tips.clone();
        // The newest history first: $left (a stored outlier) and $right, whose prev $m1 is unknown.
        let first = b.admit_as(&[room[4].clone(), room[3].clone()], Mode::Backfilled, None).unwrap();
        let right = first.outcomes[0].clone().unwrap();
        assert!(right.outlier && right.state_after.is_none(), "{right:?}");
        assert_eq!(first.outcomes[1], None, "a stored outlier that still cannot have state");
        assert!(first.upgraded.is_empty());
        // Then the rest, newest first: everything gets its state.
        let rest = b.admit_as(&[room[2].clone(), room[1].clone(), room[0].clone()], Mode::Backfilled, None).unwrap();
        // $create and $join were outliers: upgraded in the batch; $m1 is new.
        assert!(rest.outcomes[0].as_ref().is_some_and(|o| !o.upgrade && o.state_after.is_some()));
        assert!(rest.outcomes[1].as_ref().is_some_and(|o| o.upgrade && o.state_after.is_some()));
        // $left and $right (stored outliers) follow $m1: upgraded.
        let mut upgraded: Vec<i64> = rest.upgraded.iter().map(|(_, o)| o.nid).collect();
        upgraded.sort();
        assert_eq!(upgraded, vec![b.nid("$left"), b.nid("$right")]);
        assert!(rest.upgraded.iter().all(|(_, o)| o.upgrade && o.rejection.is_none() && o.state_after.is_some()));
        for id in ["$create", "$join", "$m1", "$left", "$right", "$merge"] {
            let k = &b.known[&(id.to_owned(), ROOM)];
            assert!(!k.outlier, "{id} still an outlier");
            let f = &full.known[&(id.to_owned(), ROOM)];
            let entries = |bb: &Batch, snap: i64| -> Vec<String> {
                let mut v: Vec<String> =
                    bb.store.full_state(snap).unwrap().iter().map(|e| bb.store.event_by_nid(e.event_nid).unwrap().pdu.event_id.clone()).collect();
                v.sort();
                v
            };
            assert_eq!(entries(&b, k.state_after.unwrap()), entries(&full, f.state_after.unwrap()), "{id}");
        }
        assert_eq!(b.tips, tips, "backfilled events never move the extremities or the current state");
    }

    /// Live: an event stored as an outlier because its prev events were missing gets its state
    /// once they arrive (get_missing_events filled the gap) and becomes the extremity.
    #[test]
    fn a_live_outlier_gets_its_state_and_becomes_the_extremity_when_its_gap_is_filled() {
        let room = forked_room();
        let mut b = Batch::new();
        b.admit(&room[..3], false).unwrap();
        b.admit(&room[5..6], true).unwrap();
        let filled = b.admit_as(&room[3..5], Mode::Live, None).unwrap();
        assert_eq!(filled.upgraded.len(), 1, "{filled:?}");
        let (_, merge) = &filled.upgraded[0];
        assert!(merge.upgrade && merge.rejection.is_none() && merge.state_after.is_some());
        assert_eq!(b.extremities(), vec![b.nid("$merge")]);
        assert_eq!(b.tips[&ROOM].current, merge.state_after);
        // Sent again: a duplicate.
        assert_eq!(b.admit(&room[5..6], false).unwrap(), vec![None]);
    }

    /// Filling the gap before an event stored with supplied state, live: the filled events get
    /// their state but are no forward extremities (an event with state follows them), as in
    /// Synapse's `_calculate_new_extremities`; the history outliers after them likewise.
    #[test]
    fn events_filling_a_gap_before_a_stated_event_are_no_extremities() {
        let room = forked_room();
        let mut b = Batch::new();
        b.admit(&room[..2], false).unwrap();
        b.admit(&room[3..4], true).unwrap();
        b.admit_as(&room[5..6], Mode::Live, Some(&["$create", "$join", "$left"])).unwrap();
        // $join has no known successor yet.
        assert_eq!(b.extremities(), vec![b.nid("$join"), b.nid("$merge")]);
        // $m1 and $right arrive live (get_missing_events): $right is followed by $merge; the
        // outlier $left (followed by $merge too) gets its state; neither becomes an extremity.
        let out = b.admit_as(&room[2..5].iter().filter(|p| p.event_id != "$left").cloned().collect::<Vec<_>>(), Mode::Live, None).unwrap();
        assert!(out.outcomes.iter().all(|o| o.as_ref().is_some_and(|o| o.state_after.is_some() && o.rejection.is_none())), "{out:?}");
        assert_eq!(out.upgraded.iter().map(|(_, o)| o.nid).collect::<Vec<_>>(), vec![b.nid("$left")]);
        assert_eq!(b.extremities(), vec![b.nid("$merge")], "only the merge is a tip");
    }
}
