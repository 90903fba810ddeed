use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use roomserver_core::canonical_json::to_canonical_string;
    use roomserver_core::hashes::{event_id, with_content_hash};
    use roomserver_core::RoomVersion;
    use serde_json::{json, Value};

    fn ev(v: Value) -> Value {
        with_content_hash(v).unwrap()
    }

    fn id(v: &Value, rv: &str) -> String {
        event_id(v, &RoomVersion::from_id(rv).unwrap()).unwrap()
    }

    fn ingest(pdu: &Value, version: Option<&str>) -> Value {
        let sql = "SELECT roomserver.ingest_event($1, $2)";
        Spi::get_one_with_args::<JsonB>(sql, &[JsonB(pdu.clone()).into(), version.map(str::to_owned).into()])
            .unwrap()
            .unwrap()
            .0
    }

    fn stored_pdu(event_id: &str) -> Value {
        Spi::get_one_with_args::<JsonB>("SELECT roomserver.pdu($1)", &[event_id.into()]).unwrap().unwrap().0
    }

    /// create -> join -> message, in room version 10.
    fn small_room() -> Vec<Value> {
        let create = ev(json!({"type": "m.room.create", "state_key": "", "room_id": "!t:x", "sender": "@a:x",
            "content": {"creator": "@a:x", "room_version": "10"}, "depth": 1, "origin_server_ts": 1,
            "prev_events": [], "auth_events": []}));
        let c = id(&create, "10");
        let join = ev(json!({"type": "m.room.member", "state_key": "@a:x", "room_id": "!t:x", "sender": "@a:x",
            "content": {"membership": "join"}, "depth": 2, "origin_server_ts": 2,
            "prev_events": [c], "auth_events": [c]}));
        let j = id(&join, "10");
        let msg = ev(json!({"type": "m.room.message", "room_id": "!t:x", "sender": "@a:x",
            "content": {"body": "hello", "msgtype": "m.text"}, "depth": 3, "origin_server_ts": 3,
            "prev_events": [j], "auth_events": [c, j], "unsigned": {"age": 1}}));
        vec![create, join, msg]
    }

    #[pg_test]
    fn ingest_stores_and_rebuilds_equal_canonical_json() {
        for pdu in small_room() {
            let r = ingest(&pdu, None);
            assert_eq!(r["event_id"], json!(id(&pdu, "10")));
            assert!(r["event_nid"].as_i64().unwrap() > 0);
            assert_eq!(r["duplicate"], json!(false));
            let back = stored_pdu(r["event_id"].as_str().unwrap());
            assert_eq!(to_canonical_string(&back).unwrap(), to_canonical_string(&pdu).unwrap());
        }
        let version = Spi::get_one::<String>("SELECT room_version FROM roomserver.rooms WHERE room_id = '!t:x'");
        assert_eq!(version, Ok(Some("10".to_owned())));
    }

    #[pg_test]
    fn ingesting_twice_is_a_no_op_with_the_same_nid() {
        let room = small_room();
        let first = ingest(&room[0], None);
        let again = ingest(&room[0], None);
        assert_eq!(first["event_nid"], again["event_nid"]);
        assert_eq!(again["duplicate"], json!(true));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.stored_events"), Ok(Some(1)));
    }

    fn ingest_outlier(pdu: &Value) -> Value {
        let sql = "SELECT roomserver.ingest_event($1, NULL, true)";
        Spi::get_one_with_args::<JsonB>(sql, &[JsonB(pdu.clone()).into()]).unwrap().unwrap().0
    }

    #[pg_test]
    fn references_to_later_events_resolve_when_they_arrive() {
        let room = small_room();
        ingest(&room[0], None);
        // The join as an outlier, then the message: both without state.
        ingest_outlier(&room[1]);
        let r = ingest_outlier(&room[2]);
        assert_eq!(r["outlier"], json!(true));
        assert_eq!(r["rejection"], Value::Null);
        // The join is an outlier: the message's prev event has no state, and neither has it.
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.stored_events WHERE state_after IS NOT NULL"), Ok(Some(1)));
        // The join with its state: the message, the outlier after it, gets its state too and
        // becomes the forward extremity.
        let r = ingest(&room[1], None);
        assert_eq!((r["outlier"].clone(), r["duplicate"].clone()), (json!(false), json!(false)));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.stored_events WHERE outlier"), Ok(Some(0)));
        let tip = Spi::get_one::<String>("SELECT e.event_id FROM roomserver.extremities x JOIN roomserver.stored_events e USING (room_nid, event_nid)");
        assert_eq!(tip, Ok(Some(id(&room[2], "10"))));
        let r = ingest(&room[2], None);
        assert_eq!((r["outlier"].clone(), r["duplicate"].clone()), (json!(false), json!(true)));
        let back = stored_pdu(&id(&room[2], "10"));
        assert_eq!(to_canonical_string(&back).unwrap(), to_canonical_string(&room[2]).unwrap());
    }

    #[pg_test]
    #[should_panic(expected = "its auth events are not known")]
    fn an_event_with_unknown_auth_events_is_refused() {
        let room = small_room();
        ingest(&room[0], None);
        ingest_outlier(&room[2]);
    }

    #[pg_test]
    #[should_panic(expected = "its prev events are not known")]
    fn an_event_with_unknown_prev_events_is_refused_unless_an_outlier() {
        let room = small_room();
        ingest(&room[0], None);
        ingest_outlier(&room[1]);
        // The join is an outlier: the message cannot get a state from it.
        ingest(&room[2], None);
    }

    #[pg_test]
    fn batch_ingest_takes_a_room_in_one_call() {
        let room = small_room();
        let n = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM roomserver.ingest_events($1)",
            &[JsonB(Value::Array(room.clone())).into()],
        );
        assert_eq!(n, Ok(Some(3)));
        let known = Spi::get_one::<i64>("SELECT count(*) FROM roomserver.event_references WHERE known");
        assert_eq!(known, Ok(Some(5)));
    }

    #[pg_test]
    fn a_tampered_event_is_stored_redacted_and_flagged() {
        let room = small_room();
        ingest(&room[0], None);
        ingest(&room[1], None);
        let mut msg = room[2].clone();
        msg["content"]["body"] = json!("tampered");
        let r = ingest(&msg, None);
        assert_eq!(r["content_hash_ok"], json!(false));
        let back = stored_pdu(r["event_id"].as_str().unwrap());
        assert_eq!(back["content"], json!({}));
        assert!(back.get("unsigned").is_none());
    }

    #[pg_test(error = "ingest_event: room !t:x is unknown and no room_version was given: ingest its create event first or pass the room version")]
    fn an_event_of_an_unknown_room_needs_a_version() {
        ingest(&small_room()[2], None);
    }

    #[pg_test]
    fn well_known_nids_are_fixed() {
        assert_eq!(Spi::get_one::<i64>("SELECT roomserver.event_type_nid('m.room.create')"), Ok(Some(1)));
        assert_eq!(Spi::get_one::<i64>("SELECT roomserver.event_type_nid('m.room.member')"), Ok(Some(5)));
        assert_eq!(Spi::get_one::<String>("SELECT roomserver.event_type(16)"), Ok(Some("m.room.pinned_events".into())));
        ingest(&small_room()[0], None);
        assert_eq!(Spi::get_one::<i64>("SELECT roomserver.state_key_nid('!t:x', '')"), Ok(Some(1)));
        let a = Spi::get_one::<i64>("SELECT roomserver.state_key_nid('!t:x', '@a:x')").unwrap().unwrap();
        assert!(a >= 65536);
        let rn = Spi::get_one::<i64>("SELECT roomserver.room_nid('!t:x')").unwrap().unwrap();
        assert_eq!(Spi::get_one_with_args::<String>("SELECT roomserver.state_key($1, $2)", &[rn.into(), a.into()]), Ok(Some("@a:x".into())));
    }

    /// Room versions 1 and 2: server-assigned event IDs and [event_id, hashes] references.
    #[pg_test]
    fn v1_rooms_keep_event_ids_and_reference_hashes() {
        let create = ev(json!({"type": "m.room.create", "state_key": "", "room_id": "!old:x", "sender": "@a:x",
            "event_id": "$create:x", "content": {"creator": "@a:x"}, "depth": 1, "origin_server_ts": 1,
            "origin": "x", "prev_events": [], "auth_events": [], "prev_state": []}));
        let msg = ev(json!({"type": "m.room.message", "room_id": "!old:x", "sender": "@a:x", "event_id": "$msg:x",
            "content": {"body": "hi"}, "depth": 2, "origin_server_ts": 2, "origin": "x",
            "prev_events": [["$create:x", {"sha256": "abc"}]], "auth_events": [["$create:x", {"sha256": "abc"}]]}));
        assert_eq!(ingest(&create, None)["event_id"], json!("$create:x"));
        assert_eq!(ingest(&msg, None)["event_id"], json!("$msg:x"));
        assert_eq!(Spi::get_one::<String>("SELECT room_version FROM roomserver.rooms WHERE room_id = '!old:x'"), Ok(Some("1".into())));
        for (id, pdu) in [("$create:x", &create), ("$msg:x", &msg)] {
            assert_eq!(to_canonical_string(&stored_pdu(id)).unwrap(), to_canonical_string(pdu).unwrap());
        }
        let known = Spi::get_one::<i64>("SELECT count(*) FROM roomserver.event_references WHERE event_id = '$msg:x' AND known");
        assert_eq!(known, Ok(Some(2)));
    }

    /// Room version 12: the create event has no room_id; the room ID is its hash.
    #[pg_test]
    fn v12_room_ids_come_from_the_create_event() {
        let create = ev(json!({"type": "m.room.create", "state_key": "", "sender": "@a:x",
            "content": {"room_version": "12"}, "depth": 1, "origin_server_ts": 1, "prev_events": [], "auth_events": []}));
        let c = id(&create, "12");
        let room_id = format!("!{}", &c[1..]);
        let join = ev(json!({"type": "m.room.member", "state_key": "@a:x", "room_id": room_id, "sender": "@a:x",
            "content": {"membership": "join"}, "depth": 2, "origin_server_ts": 2, "prev_events": [c], "auth_events": []}));
        let r = ingest(&create, None);
        assert_eq!(r["room_id"], json!(room_id));
        ingest(&join, None);
        let version = Spi::get_one_with_args::<String>("SELECT room_version FROM roomserver.rooms WHERE room_id = $1", &[room_id.clone().into()]);
        assert_eq!(version, Ok(Some("12".into())));
        let back = stored_pdu(&c);
        assert!(back.get("room_id").is_none());
        assert_eq!(to_canonical_string(&back).unwrap(), to_canonical_string(&create).unwrap());
        assert_eq!(to_canonical_string(&stored_pdu(&id(&join, "12"))).unwrap(), to_canonical_string(&join).unwrap());
    }

    /// Every room version ingests and round-trips a create event and a message.
    #[pg_test]
    fn every_room_version_round_trips() {
        for v in roomserver_core::room_version::ALL {
            let room = format!("!rv{}:x", v.id);
            let mut create = json!({"type": "m.room.create", "state_key": "", "room_id": room, "sender": "@a:x",
                "content": {"creator": "@a:x", "room_version": v.id}, "depth": 1, "origin_server_ts": 1,
                "prev_events": [], "auth_events": []});
            if v.room_id_from_create_event {
                create.as_object_mut().unwrap().remove("room_id");
            }
            if !v.event_id_is_hash() {
                create["event_id"] = json!(format!("$c{}:x", v.id));
            }
            let create = ev(create);
            let r = ingest(&create, None);
            let room_id = r["room_id"].as_str().unwrap().to_owned();
            let c = r["event_id"].as_str().unwrap().to_owned();
            let reference = if v.event_id_is_hash() { json!(c) } else { json!([c, {"sha256": "h"}]) };
            let mut msg = json!({"type": "m.room.message", "room_id": room_id, "sender": "@a:x",
                "content": {"body": v.id}, "depth": 2, "origin_server_ts": 2,
                "prev_events": [reference.clone()], "auth_events": if v.room_id_from_create_event { json!([]) } else { json!([reference]) }});
            if !v.event_id_is_hash() {
                msg["event_id"] = json!(format!("$m{}:x", v.id));
            }
            let msg = ev(msg);
            let m = ingest(&msg, None);
            assert_eq!(m["event_id"], json!(id(&msg, v.id)), "room version {}", v.id);
            for (eid, pdu) in [(c.as_str(), &create), (m["event_id"].as_str().unwrap(), &msg)] {
                assert_eq!(to_canonical_string(&stored_pdu(eid)).unwrap(), to_canonical_string(pdu).unwrap(), "room version {}", v.id);
            }
        }
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.check_integrity()"), Ok(Some(0)));
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.event_references WHERE NOT known"), Ok(Some(0)));
    }
}
