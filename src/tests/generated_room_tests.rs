use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use std::collections::HashMap;

    use pgrx::prelude::*;
    use pgrx::JsonB;
    use roomgen::{generate_vec, RoomConfig};
    use roomserver_conformance::naive_state::NaiveRoom;
    use roomserver_core::canonical_json::to_canonical_string;
    use roomserver_core::prng::Rng;
    use roomserver_core::{hashes, Pdu, RoomVersion};
    use serde_json::Value;

    fn forked_room(i: usize, rv: &RoomVersion) -> (Vec<Value>, roomgen::RoomSummary) {
        let config = RoomConfig {
            seed: 100 + i as u64,
            room_version: rv.id.to_owned(),
            members: 12,
            servers: 3,
            events: 120,
            fork_every: 15,
            fork_width: 3,
            fork_depth: 3,
            state_churn: 0.3,
            power_share: 1.0,
        };
        let (pdus, summary) = generate_vec(&config).expect("generated room");
        assert!(summary.merges > 0, "room version {} has no merges", rv.id);
        (pdus, summary)
    }

    fn ingest_one(pdu: &Value, outlier: bool) -> Value {
        Spi::get_one_with_args::<JsonB>("SELECT roomserver.ingest_event($1, NULL, $2)", &[JsonB(pdu.clone()).into(), outlier.into()])
            .unwrap()
            .unwrap()
            .0
    }

    fn state_at(event_id: &str, after: bool) -> HashMap<(String, String), String> {
        Spi::connect(|c| {
            c.select("SELECT type, state_key, event_id FROM roomserver.state_at_event($1, $2)", None, &[event_id.into(), after.into()])
                .unwrap()
                .map(|r| ((r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap()), r.get(3).unwrap().unwrap()))
                .collect()
        })
    }

    /// Generated rooms with forks, for every room version, ingested in order (half one by one,
    /// half in one batch): for every event, the stored state before and after it and its outcome
    /// equal a naive recomputation (full states, state resolution at every merge); equal states
    /// share one snapshot; current state and forward extremities agree too.
    #[pg_test]
    fn stored_state_equals_naive_recomputation() {
        for (i, rv) in roomserver_core::room_version::ALL.iter().enumerate() {
            let (pdus, summary) = forked_room(i, rv);
            let (one_by_one, batch) = pdus.split_at(pdus.len() / 2);
            for pdu in one_by_one {
                ingest_one(pdu, false);
            }
            let n = Spi::get_one_with_args::<i64>("SELECT count(*) FROM roomserver.ingest_events($1)", &[JsonB(Value::Array(batch.to_vec())).into()]);
            assert_eq!(n, Ok(Some(batch.len() as i64)));

            let mut naive = NaiveRoom::new(*rv);
            let mut snapshot_of: HashMap<Vec<((String, String), String)>, i64> = HashMap::new();
            for json in &pdus {
                let p = Pdu::from_json(json, rv).unwrap();
                let id = p.event_id.clone();
                naive.ingest(p);
                let (rejected, soft, before_nid, after_nid) = Spi::connect(|c| {
                        let row = c
                            .select("SELECT rejection IS NOT NULL, soft_failure IS NOT NULL, state_before, state_after FROM roomserver.stored_events WHERE event_id = $1", None, &[id.clone().into()])
                            .unwrap()
                            .first();
                        (
                            row.get::<bool>(1).unwrap().unwrap(),
                            row.get::<bool>(2).unwrap().unwrap(),
                            row.get::<i64>(3).unwrap().unwrap(),
                            row.get::<i64>(4).unwrap().unwrap(),
                        )
                    });
                assert_eq!((rejected, soft), naive.outcome[&id], "v{} {id}", rv.id);
                for (after, nid, want) in [(false, before_nid, &naive.before[&id]), (true, after_nid, &naive.after[&id])] {
                    let got = state_at(&id, after);
                    assert_eq!(&got, want, "v{} {id} after={after}", rv.id);
                    let mut key: Vec<_> = got.into_iter().collect();
                    key.sort();
                    assert_eq!(*snapshot_of.entry(key).or_insert(nid), nid, "v{} {id}: one state, two snapshots", rv.id);
                }
            }
            let current: HashMap<(String, String), String> = Spi::connect(|c| {
                c.select("SELECT type, state_key, event_id FROM roomserver.current_state WHERE room_id = $1", None, &[summary.room_id.clone().into()])
                    .unwrap()
                    .map(|r| ((r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap()), r.get(3).unwrap().unwrap()))
                    .collect()
            });
            assert_eq!(current, naive.current, "v{} current state", rv.id);
            let extremities: Vec<String> = Spi::connect(|c| {
                c.select("SELECT e FROM roomserver.forward_extremities($1) e", None, &[summary.room_id.clone().into()])
                    .unwrap()
                    .map(|r| r.get::<String>(1).unwrap().unwrap())
                    .collect()
            });
            let mut extremities = extremities;
            extremities.sort();
            assert_eq!(extremities, naive.extremities.iter().cloned().collect::<Vec<_>>(), "v{} extremities", rv.id);
        }
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.check_integrity()"), Ok(Some(0)));
    }

    /// A deterministic shuffle (the core's generator), so events arrive out of order.
    fn shuffled(mut v: Vec<Value>, seed: u64) -> Vec<Value> {
        Rng::new(seed).shuffle(&mut v);
        v
    }

    /// The same rooms arriving in any order as outliers (each once its auth events are in),
    /// then again in order: references resolve as events arrive, the outliers become full
    /// events with the same state as an in-order ingest, and every PDU comes back as it went in.
    #[pg_test]
    fn outliers_in_any_order_then_their_state() {
        for (i, rv) in roomserver_core::room_version::ALL.iter().enumerate() {
            let (pdus, summary) = forked_room(i, rv);
            let version = RoomVersion::from_id(rv.id).unwrap();
            let ids: Vec<String> = pdus.iter().map(|p| hashes::event_id(p, &version).unwrap()).collect();
            // The create event first: from room version 12 it is every event's implicit auth event.
            let mut stored: std::collections::HashSet<String> = std::collections::HashSet::new();
            stored.insert(ingest_one(&pdus[0], true)["event_id"].as_str().unwrap().to_owned());
            let mut waiting = shuffled(pdus[1..].to_vec(), 7 + i as u64);
            while !waiting.is_empty() {
                let before = waiting.len();
                waiting.retain(|p| {
                    let ready = p["auth_events"].as_array().unwrap().iter().all(|a| {
                        let a = a.as_str().or_else(|| a[0].as_str()).unwrap();
                        stored.contains(a)
                    });
                    if ready {
                        let r = ingest_one(p, true);
                        assert_eq!(r["outlier"], Value::Bool(true));
                        stored.insert(r["event_id"].as_str().unwrap().to_owned());
                    }
                    !ready
                });
                assert!(waiting.len() < before, "v{}: auth events never arrive", rv.id);
            }
            let pending = Spi::get_one_with_args::<i64>("SELECT count(*) FROM roomserver.event_references WHERE room_id = $1 AND NOT known", &[summary.room_id.clone().into()]);
            assert_eq!(pending, Ok(Some(0)), "v{}", rv.id);
            // The create event with its state: every outlier after it gets its state with it
            // (in DAG order), so the rest are duplicates.
            let r = ingest_one(&pdus[0], false);
            assert_eq!((&r["outlier"], &r["duplicate"]), (&Value::Bool(false), &Value::Bool(false)), "v{}: {r}", rv.id);
            let outliers = Spi::get_one_with_args::<i64>("SELECT count(*) FROM roomserver.events WHERE room_id = $1 AND outlier", &[summary.room_id.clone().into()]);
            assert_eq!(outliers, Ok(Some(0)), "v{}: outliers left after the create event got its state", rv.id);
            for p in &pdus[1..] {
                let r = ingest_one(p, false);
                assert_eq!((&r["outlier"], &r["duplicate"]), (&Value::Bool(false), &Value::Bool(true)), "v{}: {r}", rv.id);
            }
            let mut naive = NaiveRoom::new(*rv);
            for (json, id) in pdus.iter().zip(&ids) {
                naive.ingest(Pdu::from_json(json, rv).unwrap());
                assert_eq!(&state_at(id, true), &naive.after[id], "v{} {id}", rv.id);
                let back = Spi::get_one_with_args::<JsonB>("SELECT roomserver.pdu($1)", &[id.clone().into()]).unwrap().unwrap().0;
                // The targets of the room's applied redactions come back redacted, with
                // unsigned.redacted_because (docs/redactions.md).
                let redacted = Spi::get_one_with_args::<bool>("SELECT EXISTS (SELECT 1 FROM roomserver.redactions WHERE target = $1 AND applied)", &[id.clone().into()])
                    .unwrap()
                    .unwrap();
                let (back, expect) = if redacted {
                    let mut b = back.clone();
                    b.as_object_mut().unwrap().remove("unsigned");
                    (b, roomserver_core::redaction::redact(json, rv))
                } else {
                    (back, json.clone())
                };
                assert_eq!(to_canonical_string(&back).unwrap(), to_canonical_string(&expect).unwrap(), "{id} in room version {}", rv.id);
            }
        }
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.check_integrity()"), Ok(Some(0)));
    }
}
