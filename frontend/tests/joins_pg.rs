//! The admin API and make_join / send_join against a real database (ignored without one):
//!
//! ```sh
//! ROOMSERVER_TEST_DATABASE_URL='host=/tmp/pg port=5432 user=postgres dbname=fe' \
//!     cargo test -p roomserver-http --test joins_pg -- --ignored
//! ```
//!
//! A local user creates rooms (v10 and v12) and speaks through the admin API; a fake remote
//! server (`s1.example`, its keys served from loopback) joins a user with make_join and
//! send_join, then reads history as a member.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use roomserver_core::signing::hash_and_sign_event;
use roomserver_core::RoomVersion;
use roomserver_http::keys::ServerKey;
use roomserver_http::outbound::{FederationClient, Signer};
use serde_json::{json, Value};
use tokio::net::TcpStream;

#[derive(Clone)]
struct Fake {
    keys: Value,
    gap: Arc<Mutex<Vec<Value>>>,
    state_ids: Arc<Mutex<Value>>,
    /// `/event_auth` answers: the `auth_chain` of any event asked about.
    auth_chain: Arc<Mutex<Vec<Value>>>,
    /// `/event/{id}` answers, by event ID.
    events: Arc<Mutex<HashMap<String, Value>>>,
    received: Arc<Mutex<Vec<Value>>>,
}

const TOKEN: &str = "test-admin-token-0123456789";

/// A plain HTTP request to the admin API.
async fn admin(address: std::net::SocketAddr, path: &str, token: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let tcp = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder().method(Method::POST).uri(path).header(header::HOST, "localhost");
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
#[ignore = "needs ROOMSERVER_TEST_DATABASE_URL (a database with pg_roomserver)"]
async fn local_rooms_and_remote_joins() {
    let url = std::env::var("ROOMSERVER_TEST_DATABASE_URL").expect("ROOMSERVER_TEST_DATABASE_URL");
    let listeners = common::bind_our_listeners().await;
    let (our_name, admin_address) = (listeners.our_name.clone(), listeners.admin_address);
    let mut db_config: tokio_postgres::Config = url.parse().unwrap();
    db_config.options(format!("-c roomserver.server_name={our_name}"));
    let (db, connection) = db_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);

    let tls = common::test_tls();
    let remote = "s1.example";
    let remote_key = ServerKey::generate();
    let impostor_key = ServerKey::generate();
    // The remote server: its keys, get_missing_events from `gap`, and what our /send brings.
    let fake = Fake { keys: remote_key.key_response(remote, Duration::from_secs(3600), SystemTime::now()), gap: Default::default(), state_ids: Default::default(),
        auth_chain: Default::default(), events: Default::default(), received: Default::default() };
    let app = axum::Router::new()
        .route("/_matrix/key/v2/server", axum::routing::get(|State(f): State<Fake>| async move { axum::Json(f.keys) }))
        .route("/_matrix/federation/v1/get_missing_events/{room}", axum::routing::post(|State(f): State<Fake>| async move {
            axum::Json(json!({"events": f.gap.lock().unwrap().clone()}))
        }))
        .route("/_matrix/federation/v1/event_auth/{room}/{event}", axum::routing::get(|State(f): State<Fake>| async move {
            axum::Json(json!({"auth_chain": f.auth_chain.lock().unwrap().clone()}))
        }))
        .route("/_matrix/federation/v1/event/{event}", axum::routing::get(|State(f): State<Fake>, Path(id): Path<String>| async move {
            match f.events.lock().unwrap().get(&id) {
                Some(pdu) => (StatusCode::OK, axum::Json(json!({"origin": "s1.example", "origin_server_ts": 1, "pdus": [pdu]}))),
                None => (StatusCode::NOT_FOUND, axum::Json(json!({"errcode": "M_NOT_FOUND", "error": "no such event"}))),
            }
        }))
        .route("/_matrix/federation/v1/state_ids/{room}", axum::routing::get(|State(f): State<Fake>| async move {
            axum::Json(f.state_ids.lock().unwrap().clone())
        }))
        .route("/_matrix/federation/v1/send/{txn}", axum::routing::put(|State(f): State<Fake>, body: Bytes| async move {
            f.received.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            axum::Json(json!({"pdus": {}}))
        }))
        .with_state(fake.clone());
    let key_server = common::start_tls_server(&tls, app, Default::default()).await;
    let key_server_url = format!("https://127.0.0.1:{}", key_server.address.port());
    let our_server = common::start_our_server(listeners, &tls, "joins", &url, TOKEN, &[(remote, &key_server_url)]).await;

    let alice = format!("@alice:{our_name}");
    let bob = format!("@bob:{remote}");

    // The admin API: a token, local users only.
    let (status, body) = admin(admin_address, "/_roomserver/admin/v1/rooms", None, &json!({"creator": alice})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN")));
    let (status, _) = admin(admin_address, "/_roomserver/admin/v1/rooms", Some("wrong-token-0123456789xx"), &json!({"creator": alice})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = admin(admin_address, "/_roomserver/admin/v1/rooms", Some(TOKEN), &json!({"creator": bob})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = admin(admin_address, "/_roomserver/admin/v1/rooms", Some(TOKEN), &json!({"creator": alice, "room_version": "99"})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION")));

    let client = FederationClient::new(common::roots(&tls), BTreeMap::new());
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let signer = |key| Some(Signer { origin: remote, key });

    let mut rooms = Vec::new();
    for version in ["10", "12"] {
        let rv = RoomVersion::from_id(version).unwrap();
        let (status, created) = admin(admin_address, "/_roomserver/admin/v1/rooms", Some(TOKEN), &json!({"creator": alice, "room_version": version})).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let room_id = created["room_id"].as_str().unwrap().to_owned();
        assert_eq!(created["event_ids"].as_array().unwrap().len(), 5, "create, join, power levels, join rules, history visibility");
        let row = db.query_one("SELECT count(*) FILTER (WHERE NOT rejected AND NOT soft_failed AND NOT outlier), count(*) FROM roomserver.events WHERE room_id = $1", &[&room_id]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (5, 5));
        let row = db.query_one("SELECT (SELECT content ->> 'join_rule' FROM roomserver.current_state WHERE room_id = $1 AND type = 'm.room.join_rules'), \
            (SELECT content ->> 'history_visibility' FROM roomserver.current_state WHERE room_id = $1 AND type = 'm.room.history_visibility')", &[&room_id]).await.unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("public".to_owned(), "shared".to_owned()));
        let events_path = format!("/_roomserver/admin/v1/rooms/{}/events", enc(&room_id));
        let (status, sent) = admin(admin_address, &events_path, Some(TOKEN),
            &json!({"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hello"}})).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        let message_id = sent["event_id"].as_str().unwrap().to_owned();
        let (status, body) = admin(admin_address, &events_path, Some(TOKEN),
            &json!({"sender": format!("@carol:{our_name}"), "type": "m.room.message", "content": {"body": "not joined"}})).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
        let invite_path = format!("/_roomserver/admin/v1/rooms/{}/invite", enc(&room_id));
        let (status, body) = admin(admin_address, &invite_path, Some(TOKEN), &json!({"sender": alice, "user_id": format!("@dave:{our_name}")})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // A user of another server: its server must countersign; this one (the test's key
        // server) does not answer /v2/invite, so nothing is stored (the e2e tier invites a
        // Synapse user).
        let (status, body) = admin(admin_address, &invite_path, Some(TOKEN), &json!({"sender": alice, "user_id": bob})).await;
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_GATEWAY, Some("M_UNKNOWN")), "{body}");
        let stored: i64 = db.query_one("SELECT count(*) FROM roomserver.events WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2", &[&room_id, &bob]).await.unwrap().get(0);
        assert_eq!(stored, 0, "an invite the invitee's server did not sign is not stored");

        // make_join: the room version must be one the joining server knows.
        let make_join = format!("/_matrix/federation/v1/make_join/{}/{}", enc(&room_id), enc(&bob));
        let r = client.request(&our_name, Method::GET, &format!("{make_join}?ver=1&ver=2"), None, signer(&remote_key)).await.unwrap();
        let body = r.json().unwrap();
        assert_eq!((r.status, body["errcode"].as_str(), body["room_version"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INCOMPATIBLE_ROOM_VERSION"), Some(version)));
        let wrong_user = format!("/_matrix/federation/v1/make_join/{}/{}?ver={version}", enc(&room_id), enc(&alice));
        let r = client.request(&our_name, Method::GET, &wrong_user, None, signer(&remote_key)).await.unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN, "a server joins only its own users");
        let r = client.request(&our_name, Method::GET, &format!("{make_join}?ver=11&ver={version}"), None, signer(&remote_key)).await.unwrap();
        let body = r.json().unwrap();
        assert_eq!(r.status, StatusCode::OK, "{body}");
        assert_eq!(body["room_version"], json!(version));
        let template = body["event"].clone();
        assert_eq!((template["sender"].as_str(), template["state_key"].as_str()), (Some(bob.as_str()), Some(bob.as_str())));

        // A join signed by another key is refused; the real one is stored and answered.
        let forged = hash_and_sign_event(template.clone(), &rv, remote, &remote_key.key_id, &impostor_key.signing_key).unwrap();
        let join = hash_and_sign_event(template, &rv, remote, &remote_key.key_id, &remote_key.signing_key).unwrap();
        let join_id = roomserver_core::hashes::event_id(&join, &rv).unwrap();
        let send_join = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room_id), enc(&join_id));
        let r = client.request(&our_name, Method::PUT, &send_join, Some(&forged), signer(&remote_key)).await.unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.json());
        let other_id = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room_id), enc("$elsewhere"));
        let r = client.request(&our_name, Method::PUT, &other_id, Some(&join), signer(&remote_key)).await.unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);

        // Not yet in the room: no history.
        let backfill = format!("/_matrix/federation/v1/backfill/{}?v={}&limit=100", enc(&room_id), enc(&message_id));
        let r = client.request(&our_name, Method::GET, &backfill, None, signer(&remote_key)).await.unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        let r = client.request(&our_name, Method::PUT, &send_join, Some(&join), signer(&remote_key)).await.unwrap();
        let body = r.json().unwrap();
        assert_eq!(r.status, StatusCode::OK, "{body}");
        assert_eq!(body["origin"], json!(our_name));
        assert_eq!(body["event"], join);
        let expected: Value = serde_json::from_str(
            db.query_one("SELECT roomserver.state($1, $2)::text", &[&room_id, &join_id]).await.unwrap().get::<_, &str>(0),
        )
        .unwrap();
        assert_eq!(body["state"], expected["pdus"]);
        assert_eq!(body["auth_chain"], expected["auth_chain"]);
        let types: std::collections::BTreeSet<&str> = body["state"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["m.room.create", "m.room.history_visibility", "m.room.join_rules", "m.room.member", "m.room.power_levels"].into());
        // Every event we answered is signed by us and verifies with our published key.
        let keys = client.request(&our_name, Method::GET, "/_matrix/key/v2/server", None, None).await.unwrap();
        let keys = roomserver_core::server_keys::verify_key_response(&keys.json().unwrap(), &our_name).unwrap();
        for pdu in body["state"].as_array().unwrap() {
            let (key_id, key) = keys.verify_keys.iter().next().unwrap();
            roomserver_core::signing::verify_event_signature(pdu, &rv, &our_name, key_id, key).unwrap();
            assert!(roomserver_core::hashes::content_hash_matches(pdu).unwrap());
        }
        let membership: Option<String> = db
            .query_one("SELECT membership FROM roomserver.room_members WHERE room_id = $1 AND user_id = $2", &[&room_id, &bob])
            .await
            .unwrap()
            .get(0);
        assert_eq!(membership.as_deref(), Some("join"));

        // A member now: the whole history, back to the create event.
        let r = client.request(&our_name, Method::GET, &backfill, None, signer(&remote_key)).await.unwrap();
        let body = r.json().unwrap();
        assert_eq!(r.status, StatusCode::OK, "{body}");
        let pdus = body["pdus"].as_array().unwrap();
        assert_eq!(pdus.len(), 6);
        assert_eq!(pdus.last().unwrap()["type"], json!("m.room.create"));
        rooms.push((room_id, rv));
    }

    // Our events now go to s1.example: a message of Alice's arrives over /send.
    let (room_id, rv) = rooms.pop().unwrap();
    let events_path = format!("/_roomserver/admin/v1/rooms/{}/events", enc(&room_id));
    let (status, sent) = admin(admin_address, &events_path, Some(TOKEN), &json!({"sender": alice, "type": "m.room.message", "content": {"body": "to s1"}})).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let arrived = loop {
        let ids: Vec<String> = fake.received.lock().unwrap().iter()
            .flat_map(|t| t["pdus"].as_array().unwrap().iter().map(|p| roomserver_core::hashes::event_id(p, &rv).unwrap()).collect::<Vec<_>>())
            .collect();
        if ids.contains(&sent["event_id"].as_str().unwrap().to_owned()) || tokio::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(arrived, vec![sent["event_id"].as_str().unwrap().to_owned()], "only Alice's message, not Bob's own join");
    assert_eq!(fake.received.lock().unwrap()[0]["origin"], json!(our_name));

    // Bob's server sends over /send: a message, a forged one, one with a bad content hash, and
    // one after a gap that get_missing_events fills.
    let prepare = |body: &'static str| {
        let db = &db;
        let (room_id, bob) = (room_id.clone(), bob.clone());
        async move {
            let row = db.query_one("SELECT roomserver.prepare_event($1, 'm.room.message', NULL, $2, $3::text::jsonb)::text", &[&room_id, &bob, &json!({"body": body}).to_string()]).await.unwrap();
            serde_json::from_str::<Value>(row.get::<_, &str>(0)).unwrap()
        }
    };
    let sign = |pdu: Value, key: &ServerKey| hash_and_sign_event(pdu, &rv, remote, &remote_key.key_id, &key.signing_key).unwrap();
    let id_of = |pdu: &Value| roomserver_core::hashes::event_id(pdu, &rv).unwrap();
    let one = sign(prepare("one").await, &remote_key);
    let forged = sign(prepare("forged").await, &impostor_key);
    // Content is outside the signed (redacted) form: the signature holds, the hash does not.
    let mut tampered = sign(prepare("original").await, &remote_key);
    tampered["content"]["body"] = json!("tampered");
    let transaction = json!({"origin": remote, "origin_server_ts": 1, "pdus": [one, forged, tampered], "edus": [{"edu_type": "m.typing", "content": {}}]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t1", Some(&transaction), signer(&remote_key)).await.unwrap();
    let results = r.json().unwrap();
    assert_eq!(r.status, StatusCode::OK, "{results}");
    assert_eq!(results["pdus"][id_of(&one)], json!({}));
    assert!(results["pdus"][id_of(&forged)]["error"].as_str().unwrap().contains("does not match"), "{results}");
    assert_eq!(results["pdus"][id_of(&tampered)], json!({}), "a bad hash is stored, redacted");
    let row = db.query_one("SELECT (SELECT count(*) FROM roomserver.events WHERE event_id = $1),         (SELECT content_hash_ok FROM roomserver.events WHERE event_id = $2), roomserver.pdu($2) -> 'content' ->> 'body'", &[&id_of(&forged), &id_of(&tampered)]).await.unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1), row.get::<_, Option<String>>(2)), (0, false, None));

    // two follows one (not sent); three follows two.
    let after = |prev: &Value, body: &str| {
        let mut next = prev.clone();
        next.as_object_mut().unwrap().remove("signatures");
        next["prev_events"] = json!([id_of(prev)]);
        next["depth"] = json!(prev["depth"].as_i64().unwrap() + 1);
        next["content"] = json!({"body": body});
        next["origin_server_ts"] = json!(prev["origin_server_ts"].as_i64().unwrap() + 1);
        sign(next, &remote_key)
    };
    let two = after(&one, "two");
    let three = after(&two, "three");
    let four = after(&three, "four");
    fake.gap.lock().unwrap().extend([three.clone(), two.clone()]);
    let transaction = json!({"origin": remote, "origin_server_ts": 2, "pdus": [four]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t2", Some(&transaction), signer(&remote_key)).await.unwrap();
    let results = r.json().unwrap();
    assert_eq!(results, json!({"pdus": {id_of(&four): {}}}));
    let extremities: Vec<String> = db.query_one("SELECT array(SELECT roomserver.forward_extremities($1))", &[&room_id]).await.unwrap().get(0);
    // `tampered` forks from where `one` did.
    assert_eq!(extremities.iter().collect::<std::collections::BTreeSet<_>>(), [id_of(&four), id_of(&tampered)].iter().collect());
    let row = db.query_one("SELECT count(*) FROM roomserver.events WHERE event_id = ANY($1) AND NOT outlier AND NOT rejected", &[&vec![id_of(&two), id_of(&three)]]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);

    // A gap get_missing_events does not close (it answers nothing): the state before the PDU
    // comes from /state_ids (all known here: messages change no state), and the PDU is stored
    // with it; the event before it stays a gap.
    let five = after(&four, "five (never sent)");
    let six = after(&five, "six");
    fake.gap.lock().unwrap().clear();
    let current: Value = serde_json::from_str(db.query_one("SELECT roomserver.state_ids($1, $2)::text", &[&room_id, &id_of(&four)]).await.unwrap().get::<_, &str>(0)).unwrap();
    *fake.state_ids.lock().unwrap() = current;
    let transaction = json!({"origin": remote, "origin_server_ts": 3, "pdus": [six]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t3", Some(&transaction), signer(&remote_key)).await.unwrap();
    assert_eq!(r.json().unwrap(), json!({"pdus": {id_of(&six): {}}}));
    let row = db.query_one("SELECT outlier, rejected FROM roomserver.events WHERE event_id = $1", &[&id_of(&six)]).await.unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, false));
    let gaps: Vec<String> = db.query_one("SELECT array(SELECT event_id FROM roomserver.backward_extremities($1))", &[&room_id]).await.unwrap().get(0);
    assert_eq!(gaps, vec![id_of(&six)]);

    // An auth event we do not have (Bob's new displayname, never sent) cited by a PDU whose prev
    // event we have: fetched with /event_auth, stored as an outlier, and the PDU accepted.
    let member = |displayname: &str| {
        let db = &db;
        let (room_id, bob) = (room_id.clone(), bob.clone());
        let content = json!({"membership": "join", "displayname": displayname}).to_string();
        async move {
            let row = db.query_one("SELECT roomserver.prepare_event($1, 'm.room.member', $2, $2, $3::text::jsonb)::text", &[&room_id, &bob, &content]).await.unwrap();
            serde_json::from_str::<Value>(row.get::<_, &str>(0)).unwrap()
        }
    };
    let renamed = sign(member("Bob the first").await, &remote_key);
    let mut seven = after(&six, "seven");
    seven.as_object_mut().unwrap().remove("signatures");
    let old_member: String = db.query_one("SELECT event_id FROM roomserver.current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2", &[&room_id, &bob]).await.unwrap().get(0);
    let auth: Vec<Value> = seven["auth_events"].as_array().unwrap().iter().map(|a| if a == &json!(old_member) { json!(id_of(&renamed)) } else { a.clone() }).collect();
    assert!(auth.contains(&json!(id_of(&renamed))), "seven cites Bob's membership");
    seven["auth_events"] = json!(auth);
    let seven = sign(seven, &remote_key);
    let known_chain: Value = serde_json::from_str(db.query_one("SELECT roomserver.event_auth($1, $2)::text", &[&room_id, &id_of(&six)]).await.unwrap().get::<_, &str>(0)).unwrap();
    let mut chain = known_chain["auth_chain"].as_array().unwrap().clone();
    chain.push(renamed.clone());
    *fake.auth_chain.lock().unwrap() = chain;
    let transaction = json!({"origin": remote, "origin_server_ts": 4, "pdus": [seven]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t4", Some(&transaction), signer(&remote_key)).await.unwrap();
    assert_eq!(r.json().unwrap(), json!({"pdus": {id_of(&seven): {}}}));
    let row = db.query_one("SELECT (SELECT outlier FROM roomserver.events WHERE event_id = $1), (SELECT NOT outlier AND NOT rejected FROM roomserver.events WHERE event_id = $2)", &[&id_of(&renamed), &id_of(&seven)]).await.unwrap();
    assert_eq!((row.get::<_, Option<bool>>(0), row.get::<_, Option<bool>>(1)), (Some(true), Some(true)), "the auth event an outlier, the PDU accepted");

    // A gap whose state holds an event we do not have (Bob renamed again, in the gap): after
    // /state_ids, that event comes from /event; the PDU is stored with that state.
    let mut renamed_again = member("Bob the second").await;
    renamed_again.as_object_mut().unwrap().remove("hashes");
    renamed_again["prev_events"] = json!([id_of(&seven)]);
    renamed_again["depth"] = json!(seven["depth"].as_i64().unwrap() + 1);
    let renamed_again = sign(renamed_again, &remote_key);
    // A message after it (from seven's, which is one), citing it as Bob's membership.
    let mut nine = seven.clone();
    nine.as_object_mut().unwrap().remove("signatures");
    nine["prev_events"] = json!([id_of(&renamed_again)]);
    nine["depth"] = json!(renamed_again["depth"].as_i64().unwrap() + 1);
    nine["content"] = json!({"body": "nine"});
    nine["origin_server_ts"] = json!(renamed_again["origin_server_ts"].as_i64().unwrap() + 1);
    nine["auth_events"] = json!(nine["auth_events"].as_array().unwrap().iter()
        .map(|a| if a == &json!(id_of(&renamed)) { json!(id_of(&renamed_again)) } else { a.clone() }).collect::<Vec<_>>());
    let nine = sign(nine, &remote_key);
    let state_at_seven: Value = serde_json::from_str(db.query_one("SELECT roomserver.state_ids($1, $2)::text", &[&room_id, &id_of(&seven)]).await.unwrap().get::<_, &str>(0)).unwrap();
    let mut state_at_nine = state_at_seven.clone();
    let pdu_ids: Vec<Value> = state_at_seven["pdu_ids"].as_array().unwrap().iter().filter(|id| **id != json!(old_member)).cloned().chain([json!(id_of(&renamed_again))]).collect();
    state_at_nine["pdu_ids"] = json!(pdu_ids);
    *fake.state_ids.lock().unwrap() = state_at_nine;
    fake.events.lock().unwrap().insert(id_of(&renamed_again), renamed_again.clone());
    let transaction = json!({"origin": remote, "origin_server_ts": 5, "pdus": [nine]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t5", Some(&transaction), signer(&remote_key)).await.unwrap();
    assert_eq!(r.json().unwrap(), json!({"pdus": {id_of(&nine): {}}}));
    let row = db.query_one("SELECT (SELECT outlier FROM roomserver.events WHERE event_id = $1), (SELECT NOT outlier AND NOT rejected FROM roomserver.events WHERE event_id = $2), \
        (SELECT content ->> 'displayname' FROM roomserver.current_state WHERE room_id = $3 AND type = 'm.room.member' AND state_key = $4)",
        &[&id_of(&renamed_again), &id_of(&nine), &room_id, &bob]).await.unwrap();
    assert_eq!((row.get::<_, Option<bool>>(0), row.get::<_, Option<bool>>(1), row.get::<_, Option<String>>(2)),
        (Some(true), Some(true), Some("Bob the second".to_owned())), "the state event from /event, the PDU stored with it");

    // m.room.server_acl: Alice denies s1.example in this room (Bob stays a member). Its reads,
    // its make_join and send_join, and its /send PDUs are refused there; the other room, with no
    // ACL, still serves it; our events of this room no longer go to it.
    let received_ids = || -> Vec<String> {
        fake.received.lock().unwrap().iter()
            .flat_map(|t| t["pdus"].as_array().unwrap().iter().map(|p| p["content"]["body"].as_str().unwrap_or(p["type"].as_str().unwrap()).to_owned()).collect::<Vec<_>>())
            .collect()
    };
    let received_before = received_ids().len();
    let (status, acl) = admin(admin_address, &events_path, Some(TOKEN),
        &json!({"sender": alice, "type": "m.room.server_acl", "state_key": "", "content": {"allow": ["*"], "deny": ["s1.example"]}})).await;
    assert_eq!(status, StatusCode::OK, "{acl}");
    let banned = |r: roomserver_http::outbound::Response, what: &str| {
        let body = r.json().unwrap();
        assert_eq!((r.status, body["errcode"].as_str(), body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN"), Some("Server is banned from room")), "{what}: {body}");
    };
    let backfill = format!("/_matrix/federation/v1/backfill/{}?v={}&limit=10", enc(&room_id), enc(&id_of(&nine)));
    banned(client.request(&our_name, Method::GET, &backfill, None, signer(&remote_key)).await.unwrap(), "backfill");
    let event_path = format!("/_matrix/federation/v1/event/{}", enc(&id_of(&nine)));
    banned(client.request(&our_name, Method::GET, &event_path, None, signer(&remote_key)).await.unwrap(), "event");
    let eve = format!("@eve:{remote}");
    let make_join = format!("/_matrix/federation/v1/make_join/{}/{}?ver={}", enc(&room_id), enc(&eve), rv.id);
    banned(client.request(&our_name, Method::GET, &make_join, None, signer(&remote_key)).await.unwrap(), "make_join");
    let send_join = format!("/_matrix/federation/v2/send_join/{}/{}", enc(&room_id), enc("$any"));
    banned(client.request(&our_name, Method::PUT, &send_join, Some(&json!({})), signer(&remote_key)).await.unwrap(), "send_join");
    let (other_room, other_rv) = rooms[0].clone();
    let other_make_join = format!("/_matrix/federation/v1/make_join/{}/{}?ver={}", enc(&other_room), enc(&eve), other_rv.id);
    let r = client.request(&our_name, Method::GET, &other_make_join, None, signer(&remote_key)).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "no ACL in the other room: {:?}", r.json());
    let banned_pdu = after(&nine, "ten (banned)");
    let transaction = json!({"origin": remote, "origin_server_ts": 6, "pdus": [banned_pdu]});
    let r = client.request(&our_name, Method::PUT, "/_matrix/federation/v1/send/t6", Some(&transaction), signer(&remote_key)).await.unwrap();
    assert_eq!(r.json().unwrap(), json!({"pdus": {id_of(&banned_pdu): {"error": "Server is banned from room"}}}));
    let row = db.query_one("SELECT count(*) FROM roomserver.events WHERE event_id = $1", &[&id_of(&banned_pdu)]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 0, "a banned server's PDU is not stored");
    // The outbox: a message here, then one in the other room. One queue per destination, in
    // order: when the second arrives, the ACL event and the first would have arrived before it.
    let (status, here) = admin(admin_address, &events_path, Some(TOKEN), &json!({"sender": alice, "type": "m.room.message", "content": {"body": "not to s1"}})).await;
    assert_eq!(status, StatusCode::OK, "{here}");
    let other_events = format!("/_roomserver/admin/v1/rooms/{}/events", enc(&other_room));
    let (status, there) = admin(admin_address, &other_events, Some(TOKEN), &json!({"sender": alice, "type": "m.room.message", "content": {"body": "to s1, other room"}})).await;
    assert_eq!(status, StatusCode::OK, "{there}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received_ids().contains(&"to s1, other room".to_owned()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(received_ids()[received_before..], ["to s1, other room"], "after the ACL, only the other room's message");

    our_server.stop().await;
}
