//! Joining a room hosted elsewhere and backfilling it, against a real database (ignored without
//! one) and a fake resident server:
//!
//! ```sh
//! ROOMSERVER_TEST_DATABASE_URL='host=/tmp/pg port=5432 user=postgres dbname=fe' \
//!     cargo test -p roomserver-http --test remote_join_pg -- --ignored
//! ```
//!
//! The resident (`s1.example`, served from loopback) holds a v10 room built with core (create,
//! Carol's join, power levels, join rules, two messages) signed with its key. Its make_join
//! refuses, offers an unknown room version, a template for another user, then the real one;
//! its send_join answers the state with a topic signed by another key. Our user joins through
//! the admin API, the history is backfilled one event a request, and our next event goes out
//! to the resident over `/send`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, Request, StatusCode};
use axum::response::IntoResponse;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use roomserver_core::hashes::event_id;
use roomserver_core::local_event::{create_event, prepare, LocalEvent};
use roomserver_core::signing::hash_and_sign_event;
use roomserver_core::RoomVersion;
use roomserver_http::keys::ServerKey;
use serde_json::{json, Value};
use tokio::net::TcpStream;

const TOKEN: &str = "test-admin-token-0123456789";
const REMOTE: &str = "s1.example";

/// What the fake resident's make_join answers.
#[derive(Clone, Copy, PartialEq)]
enum MakeJoin {
    Refuse,
    UnknownVersion,
    OtherUser,
    Join,
}

#[derive(Clone)]
struct Resident {
    keys: Value,
    mode: Arc<Mutex<MakeJoin>>,
    templates: Arc<(Value, Value)>,
    send_join_state: Arc<Vec<Value>>,
    auth_chain: Arc<Vec<Value>>,
    /// The room's events, oldest first, for /backfill.
    history: Arc<Vec<Value>>,
    joins: Arc<Mutex<Vec<Value>>>,
    /// send_join leaves the power levels out of its answer.
    incomplete: Arc<Mutex<bool>>,
    backfills: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<Value>>>,
}

/// The resident's room: each event prepared by core from the state so far and signed.
struct Room {
    rv: RoomVersion,
    room_id: String,
    events: Vec<Value>,
    state: Vec<Value>,
    extremity: Value,
    ts: i64,
}

impl Room {
    fn request(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> LocalEvent {
        self.ts += 1;
        LocalEvent {
            room_id: self.room_id.clone(),
            sender: sender.into(),
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            content,
            origin_server_ts: self.ts,
        }
    }

    fn unsigned(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) -> Value {
        let req = self.request(sender, event_type, state_key, content);
        prepare(&self.rv, &req, std::slice::from_ref(&self.extremity), &self.state).unwrap()
    }

    fn add(&mut self, signed: Value) -> Value {
        if signed.get("state_key").is_some() {
            let key = |e: &Value| (e["type"].clone(), e["state_key"].clone());
            self.state.retain(|e| key(e) != key(&signed));
            self.state.push(signed.clone());
        }
        self.extremity = signed.clone();
        self.events.push(signed.clone());
        signed
    }
}

async fn admin(address: std::net::SocketAddr, path: &str, body: &Value) -> (StatusCode, Value) {
    let tcp = TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn make_join(State(r): State<Resident>) -> axum::response::Response {
    let mode = *r.mode.lock().unwrap();
    match mode {
        MakeJoin::Refuse => (StatusCode::FORBIDDEN, axum::Json(json!({"errcode": "M_FORBIDDEN", "error": "not today"}))).into_response(),
        MakeJoin::UnknownVersion => axum::Json(json!({"room_version": "99", "event": r.templates.0})).into_response(),
        MakeJoin::OtherUser => axum::Json(json!({"room_version": "10", "event": r.templates.1})).into_response(),
        MakeJoin::Join => axum::Json(json!({"room_version": "10", "event": r.templates.0})).into_response(),
    }
}

async fn send_join(State(r): State<Resident>, body: Bytes) -> axum::Json<Value> {
    r.joins.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
    let keep = |events: &[Value]| -> Vec<Value> {
        let incomplete = *r.incomplete.lock().unwrap();
        events.iter().filter(|e| !(incomplete && e["type"] == "m.room.power_levels")).cloned().collect()
    };
    axum::Json(json!({"origin": REMOTE, "state": keep(&r.send_join_state), "auth_chain": keep(&r.auth_chain), "members_omitted": false}))
}

/// The history back from the newest event `v` names, newest first, `limit` events.
async fn backfill(State(r): State<Resident>, Path(_room): Path<String>, RawQuery(query): RawQuery) -> axum::Json<Value> {
    let rv = RoomVersion::from_id("10").unwrap();
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let from: Vec<&String> = pairs.iter().filter(|(k, _)| k == "v").map(|(_, v)| v).collect();
    let limit: usize = pairs.iter().find(|(k, _)| k == "limit").map(|(_, v)| v.parse().unwrap()).unwrap();
    r.backfills.lock().unwrap().extend(from.iter().map(|s| s.to_string()));
    let newest = r.history.iter().rposition(|e| from.contains(&&event_id(e, &rv).unwrap())).expect("backfill from a known event");
    let pdus: Vec<Value> = r.history[..=newest].iter().rev().take(limit).cloned().collect();
    axum::Json(json!({"origin": REMOTE, "pdus": pdus}))
}

#[tokio::test]
#[ignore = "needs ROOMSERVER_TEST_DATABASE_URL (a database with pg_roomserver)"]
async fn joining_a_remote_room_and_backfilling_it() {
    let url = std::env::var("ROOMSERVER_TEST_DATABASE_URL").expect("ROOMSERVER_TEST_DATABASE_URL");
    let listeners = common::bind_our_listeners().await;
    let (our_name, admin_address) = (listeners.our_name.clone(), listeners.admin_address);
    let (db, connection) = url.parse::<tokio_postgres::Config>().unwrap().connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let alice = format!("@alice:{our_name}");
    let carol = format!("@carol:{REMOTE}");

    // The resident's room.
    let rv = RoomVersion::from_id("10").unwrap();
    let key = ServerKey::generate();
    let impostor = ServerKey::generate();
    let sign = |pdu: Value, k: &ServerKey| hash_and_sign_event(pdu, &rv, REMOTE, &key.key_id, &k.signing_key).unwrap();
    // A new room each run: the database may hold earlier runs' rooms.
    let room_id = format!("!hosted{}x{}:{REMOTE}", std::process::id(), SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis());
    let create = sign(create_event(&rv, &carol, Some(&room_id), 1).unwrap(), &key);
    let mut room = Room { rv, room_id: room_id.clone(), events: vec![create.clone()], state: vec![create.clone()], extremity: create.clone(), ts: 1 };
    for (event_type, state_key, content) in [
        ("m.room.member", Some(carol.as_str()), json!({"membership": "join"})),
        ("m.room.power_levels", Some(""), json!({"users": {carol.clone(): 100}, "state_default": 50})),
        ("m.room.join_rules", Some(""), json!({"join_rule": "public"})),
        ("m.room.message", None, json!({"msgtype": "m.text", "body": "one"})),
        ("m.room.message", None, json!({"msgtype": "m.text", "body": "two"})),
    ] {
        let unsigned = room.unsigned(&carol, event_type, state_key, content);
        room.add(sign(unsigned, &key));
    }
    let mut state = room.state.clone();
    let auth_chain: Vec<Value> = room.events[..3].to_vec();
    // A topic signed by a key that is not the resident's: to be dropped.
    state.push(sign(room.unsigned(&carol, "m.room.topic", Some(""), json!({"topic": "forged"})), &impostor));
    let template = room.unsigned(&alice, "m.room.member", Some(&alice), json!({"membership": "join"}));
    let mallory = format!("@mallory:{our_name}");
    let other_template = room.unsigned(&mallory, "m.room.member", Some(&mallory), json!({"membership": "join"}));

    let tls = common::test_tls();
    let resident = Resident {
        keys: key.key_response(REMOTE, Duration::from_secs(3600), SystemTime::now()),
        mode: Arc::new(Mutex::new(MakeJoin::Refuse)),
        templates: Arc::new((template, other_template)),
        send_join_state: Arc::new(state),
        auth_chain: Arc::new(auth_chain),
        history: Arc::new(room.events.clone()),
        joins: Default::default(),
        incomplete: Arc::new(Mutex::new(true)),
        backfills: Default::default(),
        received: Default::default(),
    };
    let app = axum::Router::new()
        .route("/_matrix/key/v2/server", axum::routing::get(|State(r): State<Resident>| async move { axum::Json(r.keys) }))
        .route("/_matrix/federation/v1/make_join/{room}/{user}", axum::routing::get(make_join))
        .route("/_matrix/federation/v2/send_join/{room}/{event}", axum::routing::put(send_join))
        .route("/_matrix/federation/v1/backfill/{room}", axum::routing::get(backfill))
        .route("/_matrix/federation/v1/send/{txn}", axum::routing::put(|State(r): State<Resident>, body: Bytes| async move {
            r.received.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
            axum::Json(json!({"pdus": {}}))
        }))
        .with_state(resident.clone());
    let server_of_resident = common::start_tls_server(&tls, app, Default::default()).await;
    let resident_url = format!("https://127.0.0.1:{}", server_of_resident.address.port());
    let our_server = common::start_our_server(listeners, &tls, "remote-join", &url, TOKEN, &[(REMOTE, &resident_url)]).await;

    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let join_path = format!("/_roomserver/admin/v1/rooms/{}/join", enc(&room_id));
    let join_body = json!({"user_id": alice, "servers": [REMOTE]});
    let rooms_known = || async { db.query_one("SELECT count(*) FROM roomserver.rooms WHERE room_id = $1", &[&room_id]).await.unwrap().get::<_, i64>(0) };

    // Refusals: nothing is stored.
    let (status, body) = admin(admin_address, &join_path, &join_body).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains(REMOTE) && message.contains("M_FORBIDDEN") && message.contains("not today"), "{message}");
    *resident.mode.lock().unwrap() = MakeJoin::UnknownVersion;
    let (status, body) = admin(admin_address, &join_path, &join_body).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_UNSUPPORTED_ROOM_VERSION")), "{body}");
    *resident.mode.lock().unwrap() = MakeJoin::OtherUser;
    let (status, body) = admin(admin_address, &join_path, &join_body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "a template for another user is not signed: {body}");
    let (status, body) = admin(admin_address, &join_path, &json!({"user_id": alice, "servers": [our_name]})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")), "{body}");
    let (status, body) = admin(admin_address, &join_path, &json!({"user_id": carol, "servers": [REMOTE]})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "only our users: {body}");
    let (status, _) = admin(admin_address, &join_path, &json!({"user_id": alice, "servers": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(resident.joins.lock().unwrap().is_empty());
    assert_eq!(rooms_known().await, 0);

    // A send_join answer without the power levels the others name: nothing is stored.
    *resident.mode.lock().unwrap() = MakeJoin::Join;
    let (status, body) = admin(admin_address, &join_path, &join_body).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().unwrap().contains("incomplete"), "{body}");
    assert_eq!(rooms_known().await, 0);
    resident.joins.lock().unwrap().clear();

    // The join: signed by us, the room's state the resident's but for the forged topic.
    *resident.incomplete.lock().unwrap() = false;
    let (status, body) = admin(admin_address, &join_path, &join_body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let join_id = body["event_id"].as_str().unwrap().to_owned();
    assert_eq!(body["room_id"], json!(room_id));
    let sent_join = resident.joins.lock().unwrap()[0].clone();
    assert_eq!(event_id(&sent_join, &room.rv).unwrap(), join_id);
    assert!(sent_join["signatures"][&our_name].is_object(), "{sent_join}");
    assert_eq!(sent_join["prev_events"], resident.templates.0["prev_events"]);
    let row = db.query_one("SELECT membership FROM roomserver.room_members WHERE room_id = $1 AND user_id = $2", &[&room_id, &alice]).await.unwrap();
    assert_eq!(row.get::<_, &str>(0), "join");
    let types: Vec<String> = db.query_one("SELECT array(SELECT type FROM roomserver.current_state WHERE room_id = $1 ORDER BY type, state_key)", &[&room_id])
        .await.unwrap().get(0);
    assert_eq!(types, ["m.room.create", "m.room.join_rules", "m.room.member", "m.room.member", "m.room.power_levels"], "no forged topic");
    let row = db.query_one("SELECT outlier, rejected FROM roomserver.events WHERE event_id = $1", &[&join_id]).await.unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (false, false));
    let two = event_id(&room.events[5], &room.rv).unwrap();
    let gaps: Vec<String> = db.query_one("SELECT array(SELECT unnest(missing_prev_events) FROM roomserver.backward_extremities($1))", &[&room_id]).await.unwrap().get(0);
    assert_eq!(gaps, vec![two.clone()], "the gap before the join: the resident's last message");

    // Backfill one event a request: the two messages, then the create event once more (the
    // outliers of the join get their state from it).
    let backfill_path = format!("/_roomserver/admin/v1/rooms/{}/backfill", enc(&room_id));
    let (status, body) = admin(admin_address, &backfill_path, &json!({"limit": 1, "rounds": 10})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["complete"], json!(true), "{body}");
    let one = event_id(&room.events[4], &room.rv).unwrap();
    let create_id = event_id(&create, &room.rv).unwrap();
    assert_eq!(*resident.backfills.lock().unwrap(), vec![two.clone(), one.clone(), create_id], "from the gaps, newest first, then the create event");
    let outliers: Vec<String> = db.query_one("SELECT array(SELECT event_id FROM roomserver.events WHERE room_id = $1 AND outlier)", &[&room_id]).await.unwrap().get(0);
    assert!(outliers.is_empty(), "every event has its state: {outliers:?}");
    let topics: i64 = db.query_one("SELECT count(*) FROM roomserver.events WHERE room_id = $1 AND type = 'm.room.topic'", &[&room_id]).await.unwrap().get(0);
    assert_eq!(topics, 0, "the forged topic was dropped");
    let bodies: Vec<String> = db
        .query_one("SELECT array(SELECT roomserver.pdu(event_id) -> 'content' ->> 'body' FROM roomserver.events \
                    WHERE room_id = $1 AND type = 'm.room.message' AND NOT outlier ORDER BY depth)", &[&room_id])
        .await.unwrap().get(0);
    assert_eq!(bodies, ["one", "two"]);
    let (status, body) = admin(admin_address, &backfill_path, &json!({})).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"events": 0, "rounds": 0, "complete": true})), "nothing left to fetch");
    let (status, body) = admin(admin_address, &backfill_path, &json!({"limit": 0})).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")));

    // Our next event goes to the resident over /send.
    let (status, body) = admin(admin_address, &format!("/_roomserver/admin/v1/rooms/{}/events", enc(&room_id)),
        &json!({"sender": alice, "type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi from us"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ours = body["event_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = resident.received.lock().unwrap().iter().flat_map(|t| t["pdus"].as_array().cloned().unwrap_or_default())
            .any(|p| event_id(&p, &room.rv).ok().as_deref() == Some(ours.as_str()));
        if got {
            break;
        }
        assert!(Instant::now() < deadline, "our event did not reach the resident");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    our_server.stop().await;
}
