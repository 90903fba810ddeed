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
    use super::super::{admit_batch, BatchError, Candidate, KnownEvents, Outcome, RoomTips};
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
            let mut next = self.store.next_event_nid();
            let candidates: Vec<Candidate> = pdus
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (type_nid, state_key_nid) = self.store.assign_nids(p);
                    let new = !self.known.contains_key(&(p.event_id.clone(), ROOM));
                    let new_nid = new.then(|| {
                        next += 1;
                        next - 1
                    });
                    Candidate { position: i, room_nid: ROOM, rv: &self.rv, pdu: p, type_nid, state_key_nid, new_nid }
                })
                .collect();
            admit_batch(&mut self.store, &candidates, &mut self.known, &mut self.tips, as_outliers, &|id| self.elsewhere.iter().any(|e| e == id))
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
}
