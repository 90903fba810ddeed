use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use std::collections::HashMap;

    use pgrx::prelude::*;
    use pgrx::JsonB;
    use roomgen::{generate_vec, RoomConfig};
    use roomserver_conformance::naive_state::NaiveRoom;
    use roomserver_core::traversal::{self, DagEvent};
    use roomserver_core::visibility::{server_may_see, server_name_of, HistoryVisibility};
    use roomserver_core::{hashes, redaction, Pdu, RoomVersion};
    use serde_json::{json, Value};

    /// Room versions covering both reference formats ([id, hashes] in 1-2) and v12 room IDs.
    const VERSIONS: [&str; 4] = ["1", "5", "10", "12"];

    struct Room {
        rv: RoomVersion,
        room_id: String,
        pdus: Vec<Value>,
        ids: Vec<String>,
        dag: HashMap<String, DagEvent>,
    }

    fn load_room(i: usize, version: &str, events: usize) -> Room {
        let config = RoomConfig {
            seed: 700 + i as u64,
            room_version: version.to_owned(),
            members: 12,
            servers: 3,
            events,
            fork_every: 12,
            fork_width: 3,
            fork_depth: 4,
            state_churn: 0.4,
            power_share: 1.0,
        };
        let (pdus, summary) = generate_vec(&config).expect("generated room");
        assert!(summary.merges > 0);
        let n = Spi::get_one_with_args::<i64>("SELECT count(*) FROM roomserver.ingest_events($1)", &[JsonB(Value::Array(pdus.clone())).into()]);
        assert_eq!(n, Ok(Some(pdus.len() as i64)));
        let rv = RoomVersion::from_id(version).unwrap();
        let ids: Vec<String> = pdus.iter().map(|p| hashes::event_id(p, &rv).unwrap()).collect();
        let dag = pdus
            .iter()
            .zip(&ids)
            .map(|(p, id)| {
                let prev_events = p["prev_events"].as_array().unwrap().iter().map(|r| r.as_str().or_else(|| r[0].as_str()).unwrap().to_owned()).collect();
                (id.clone(), DagEvent { event_id: id.clone(), depth: p["depth"].as_i64().unwrap(), prev_events })
            })
            .collect();
        Room { rv, room_id: summary.room_id, pdus, ids, dag }
    }

    fn call(sql: &str, args: Vec<pgrx::datum::DatumWithOid>) -> Value {
        Spi::get_one_with_args::<JsonB>(sql, &args).unwrap().unwrap().0
    }

    fn event_ids(pdus: &Value, rv: &RoomVersion) -> Vec<String> {
        pdus.as_array().unwrap().iter().map(|p| hashes::event_id(p, rv).unwrap()).collect()
    }

    fn texts(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Every walk, from many starting points of generated forked rooms, returns exactly what the
    /// reference walk over the whole in-memory DAG returns, in the same order; the PDUs are the
    /// stored ones in federation format; unknown IDs and IDs of another room are skipped.
    #[pg_test]
    fn walks_equal_the_reference_walks() {
        Spi::run("SET roomserver.server_name = 'here.example'").unwrap();
        let rooms: Vec<Room> = VERSIONS.iter().enumerate().map(|(i, v)| load_room(i, v, 160)).collect();
        for (r, room) in rooms.iter().enumerate() {
            let foreign = &rooms[(r + 1) % rooms.len()].ids[5];
            let mut sorted: Vec<&str> = room.ids.iter().map(String::as_str).collect();
            sorted.sort_unstable();
            for (i, id) in sorted.iter().enumerate().step_by(9) {
                let other = sorted[(i * 7 + 3) % sorted.len()];
                let third = sorted[(i * 13 + 5) % sorted.len()];
                let limit = 1 + (i * 11) % 70;
                let v = [*id, other, "$unknown", foreign.as_str()];

                let body = call("SELECT roomserver.backfill($1, $2, $3)", vec![room.room_id.clone().into(), texts(&v).into(), (limit as i32).into()]);
                assert_eq!(body["origin"], json!("here.example"));
                assert!(body["origin_server_ts"].as_i64().unwrap() > 1_600_000_000_000);
                assert_eq!(event_ids(&body["pdus"], &room.rv), traversal::backfill(&room.dag, &v, limit), "v{} backfill from {id}", room.rv.id);

                let body =
                    call("SELECT roomserver.forwards_fill($1, $2, $3)", vec![room.room_id.clone().into(), texts(&v).into(), (limit as i32).into()]);
                assert_eq!(event_ids(&body["pdus"], &room.rv), traversal::forwards_fill(&room.dag, &v, limit), "v{} forwards from {id}", room.rv.id);

                for min_depth in [0i64, 20] {
                    let earliest = [other, "$unknown", foreign.as_str()];
                    let latest = [*id, third];
                    let body = call(
                        "SELECT roomserver.get_missing_events($1, $2, $3, $4, $5)",
                        vec![
                            room.room_id.clone().into(),
                            texts(&earliest).into(),
                            texts(&latest).into(),
                            (limit as i32).into(),
                            min_depth.into(),
                        ],
                    );
                    assert_eq!(
                        event_ids(&body["events"], &room.rv),
                        traversal::get_missing_events(&room.dag, &earliest, &latest, limit, min_depth),
                        "v{} get_missing_events to {id}",
                        room.rv.id
                    );
                }
            }
            // The whole room: the PDUs are the stored ones (federation format), newest first.
            let last = room.ids.last().unwrap();
            let body = call("SELECT roomserver.backfill($1, $2, 1000)", vec![room.room_id.clone().into(), vec![last.clone()].into()]);
            let pdus = body["pdus"].as_array().unwrap();
            let rejected = Spi::get_one_with_args::<i64>("SELECT count(*) FROM roomserver.events WHERE room_id = $1 AND rejected", &[room.room_id.clone().into()])
                .unwrap()
                .unwrap();
            assert_eq!(pdus.len() as i64, room.ids.len() as i64 - rejected, "v{}: every event is an ancestor of the last (rejected ones left out)", room.rv.id);
            for p in pdus {
                let id = hashes::event_id(p, &room.rv).unwrap();
                let stored = call(STORED, vec![id.clone().into()]);
                assert_eq!(p, &stored);
                assert_eq!(p.get("event_id").is_some(), room.rv.id == "1", "v{}: event_id key", room.rv.id);
            }
            // Another room's events name nothing here.
            let body = call("SELECT roomserver.backfill($1, $2, 10)", vec![room.room_id.clone().into(), vec![foreign.clone()].into()]);
            assert_eq!(body["pdus"], json!([]));
            let body = call("SELECT roomserver.forwards_fill($1, $2, 10)", vec![room.room_id.clone().into(), vec![foreign.clone()].into()]);
            assert_eq!(body["pdus"], json!([]));
        }
    }

    /// The naive visibility of every event for a server: the rule over the full state after the
    /// event as recomputed by roomgen's naive oracle.
    fn naive_visible(naive: &NaiveRoom, id: &str, server: &str) -> (HistoryVisibility, bool) {
        let after = &naive.after[id];
        let hv = HistoryVisibility::from_event(after.get(&("m.room.history_visibility".to_owned(), String::new())).map(|e| &naive.events[e]));
        let memberships = after
            .iter()
            .filter(|((t, k), _)| t == "m.room.member" && server_name_of(k) == Some(server))
            .filter_map(|(_, e)| naive.events[e].membership());
        (hv, server_may_see(hv, memberships))
    }

    /// An event as the federation bodies serve it to a server that may see it (redactions
    /// applied; roomserver.pdu adds unsigned.redacted_because for the homeserver).
    const STORED: &str = "SELECT roomserver.event_pdu(e.room_nid, e.event_nid) FROM roomserver.stored_events e WHERE e.event_id = $1";

    /// History visibility per requesting server, on generated rooms whose settings change
    /// (world_readable, shared, invited, joined) while members of three servers join, leave, are
    /// invited, kicked and banned: each event is redacted exactly when the naive rule over the
    /// full state after it says the server may not see it; internal calls (NULL) see everything.
    #[pg_test]
    fn history_visibility_for_each_setting() {
        Spi::run("SET roomserver.server_name = 'here.example'").unwrap();
        // (setting, visible) pairs met, so the test shows it covered each case.
        let mut seen: HashMap<(HistoryVisibility, bool), usize> = HashMap::new();
        use HistoryVisibility::*;
        let cases = [(WorldReadable, true), (Shared, true), (Invited, true), (Invited, false), (Joined, true), (Joined, false)];
        for (i, version) in ["10", "12", "11", "9"].iter().enumerate() {
            // Enough generated rooms to meet every case (each room checks all its events).
            if i >= 2 && cases.iter().all(|c| seen.contains_key(c)) {
                break;
            }
            let room = load_room(10 + i, version, 300);
            let mut naive = NaiveRoom::new(room.rv);
            for p in &room.pdus {
                naive.ingest(Pdu::from_json(p, &room.rv).unwrap());
            }
            let servers: Vec<String> = naive
                .events
                .values()
                .map(|e| server_name_of(&e.sender).unwrap().to_owned())
                .chain(["elsewhere.example".to_owned()])
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let last = room.ids.last().unwrap().clone();
            for server in &servers {
                let body = call("SELECT roomserver.backfill($1, $2, 1000, $3)", vec![room.room_id.clone().into(), vec![last.clone()].into(), server.clone().into()]);
                let pdus = body["pdus"].as_array().unwrap();
                // Every event but the rejected ones, which are walked through but not returned.
                let served = Spi::get_one_with_args::<i64>(
                    "SELECT count(*) FROM roomserver.events WHERE room_id = $1 AND NOT rejected",
                    &[room.room_id.clone().into()],
                )
                .unwrap()
                .unwrap();
                assert_eq!(pdus.len() as i64, served);
                for p in pdus {
                    let id = hashes::event_id(p, &room.rv).unwrap();
                    let original = &room.pdus[room.ids.iter().position(|x| *x == id).unwrap()];
                    let (hv, visible) = naive_visible(&naive, &id, server);
                    *seen.entry((hv, visible)).or_default() += 1;
                    // As served to servers: redactions applied, no unsigned.redacted_because.
                    let stored = call(STORED, vec![id.clone().into()]);
                    let expect = if visible { stored } else { redaction::redact(&stored, &room.rv) };
                    assert_eq!(p, &expect, "v{} {id} for {server}: {hv:?} visible={visible}", room.rv.id);
                    if !visible && original["type"] == "m.room.message" {
                        assert_eq!(p["content"], json!({}), "{id} should be redacted");
                    }
                    // /event agrees.
                    let single = call("SELECT roomserver.event($1, $2)", vec![id.clone().into(), server.clone().into()]);
                    assert_eq!(single["pdus"], json!([expect]));
                }
            }
            let body = call("SELECT roomserver.backfill($1, $2, 1000)", vec![room.room_id.clone().into(), vec![last.clone()].into()]);
            for p in body["pdus"].as_array().unwrap() {
                let stored = call(STORED, vec![hashes::event_id(p, &room.rv).unwrap().into()]);
                assert_eq!(p, &stored);
            }
        }
        for case in cases {
            assert!(seen.get(&case).copied().unwrap_or(0) > 0, "case {case:?} not covered: {seen:?}");
        }
    }

    /// event_auth lists the whole auth chain; missing_events names what is not stored; an event
    /// stored as an outlier with unknown prev events is a backward extremity.
    #[pg_test]
    fn event_auth_missing_events_and_backward_extremities() {
        let room = load_room(20, "10", 60);
        let events: HashMap<&str, &Value> = room.ids.iter().map(String::as_str).zip(&room.pdus).collect();
        for id in room.ids.iter().step_by(7) {
            // Naive auth chain: walk auth_events.
            let mut chain: std::collections::BTreeSet<&str> = Default::default();
            let mut todo: Vec<&str> = events[id.as_str()]["auth_events"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            while let Some(a) = todo.pop() {
                if chain.insert(a) {
                    todo.extend(events[a]["auth_events"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()));
                }
            }
            let body = call("SELECT roomserver.event_auth($1, $2)", vec![room.room_id.clone().into(), id.clone().into()]);
            let got: std::collections::BTreeSet<String> = event_ids(&body["auth_chain"], &room.rv).into_iter().collect();
            assert_eq!(got, chain.iter().map(|s| (*s).to_owned()).collect(), "auth chain of {id}");
        }
        // An incoming event referencing known and unknown events.
        let mut incoming = room.pdus.last().unwrap().clone();
        let known_prev = room.ids[room.ids.len() - 1].clone();
        incoming["prev_events"] = json!([known_prev, "$gone1", "$gone1", "$gone2"]);
        incoming["auth_events"].as_array_mut().unwrap().push(json!("$noauth"));
        let body = call("SELECT roomserver.missing_events($1)", vec![JsonB(incoming.clone()).into()]);
        assert_eq!(body, json!({"missing_prev_events": ["$gone1", "$gone2"], "missing_auth_events": ["$noauth"]}));

        // Store it as an outlier (its prev events are unknown): a gap.
        let mut gap = room.pdus.last().unwrap().clone();
        gap["prev_events"] = json!(["$gone1"]);
        gap["content"] = json!({"msgtype": "m.text", "body": "after a gap"});
        gap["hashes"] = json!({"sha256": hashes::content_hash(&gap).unwrap()});
        let gap_id = call("SELECT roomserver.ingest_event($1, NULL, true)", vec![JsonB(gap).into()])["event_id"].as_str().unwrap().to_owned();
        let rows: Vec<(String, bool, Vec<String>)> = Spi::connect(|c| {
            c.select("SELECT event_id, outlier, missing_prev_events FROM roomserver.backward_extremities($1)", None, &[room.room_id.clone().into()])
                .unwrap()
                .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap().unwrap()))
                .collect()
        });
        assert_eq!(rows, vec![(gap_id.clone(), true, vec!["$gone1".to_owned()])]);
        // The outlier is no prev event a new event can build on yet.
        incoming["prev_events"] = json!([gap_id]);
        let body = call("SELECT roomserver.missing_events($1)", vec![JsonB(incoming).into()]);
        assert_eq!(body["missing_prev_events"], json!([gap_id]));
    }

    #[pg_test(error = "limit must be positive, got 0")]
    fn limit_zero_is_an_error() {
        let room = load_room(30, "10", 60);
        Spi::run(&format!("SELECT roomserver.backfill('{}', ARRAY['$x'], 0)", room.room_id)).unwrap();
    }

    #[pg_test(error = "room !nowhere:example.org not found")]
    fn unknown_room_is_not_found() {
        Spi::run("SELECT roomserver.forwards_fill('!nowhere:example.org', ARRAY['$x'], 5)").unwrap();
    }
}
