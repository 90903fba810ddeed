//! The front end against a real database: run with ROOMSERVER_TEST_DATABASE_URL naming a database
//! where pg_roomserver is installed, e.g.
//!
//! ```sh
//! ROOMSERVER_TEST_DATABASE_URL='host=/tmp/pg port=5432 user=postgres dbname=fe' \
//!     cargo test -p roomserver-http --test federation_pg -- --ignored
//! ```
//!
//! It ingests the sample room (room version 12, members on s0.example..s2.example), starts the
//! server on loopback with a test CA made here, serves the test clients' keys from a loopback
//! key server (the `key_server_overrides` of the configuration point there), and checks each
//! endpoint's answer against the SQL function's.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::http::{Method, StatusCode};
use roomserver_http::config::Config;
use roomserver_http::keys::ServerKey;
use roomserver_http::outbound::{FederationClient, Signer};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const SAMPLE_ROOM: &str = include_str!("../../roomgen/sample/room-v12.jsonl");

async fn sql(db: &tokio_postgres::Client, query: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Value {
    let row = db.query_one(query, params).await.unwrap_or_else(|e| panic!("{query}: {e}"));
    serde_json::from_str(row.get::<_, &str>(0)).unwrap()
}

async fn get(client: &FederationClient, destination: &str, path: &str, signer: Option<Signer<'_>>) -> (StatusCode, Value) {
    let r = client.request(destination, Method::GET, path, None, signer).await.unwrap();
    (r.status, r.json().unwrap())
}

#[tokio::test]
#[ignore = "needs ROOMSERVER_TEST_DATABASE_URL (a database with pg_roomserver)"]
async fn endpoints_answer_what_the_sql_functions_answer() {
    let url = std::env::var("ROOMSERVER_TEST_DATABASE_URL").expect("ROOMSERVER_TEST_DATABASE_URL");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let our_name = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());

    // The database, as the test sees it, with the same server name as the front end.
    let mut db_config: tokio_postgres::Config = url.parse().unwrap();
    db_config.options(format!("-c roomserver.server_name={our_name}"));
    let (db, connection) = db_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let pdus: Vec<Value> = SAMPLE_ROOM.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ingested: i64 =
        db.query_one("SELECT count(*) FROM roomserver.ingest_events($1::text::jsonb)", &[&Value::Array(pdus).to_string()]).await.unwrap().get(0);
    assert_eq!(ingested, 40);
    let create_id = roomserver_core::hashes::event_id(
        &serde_json::from_str(SAMPLE_ROOM.lines().next().unwrap()).unwrap(),
        &roomserver_core::RoomVersion::from_id("12").unwrap(),
    )
    .unwrap();
    let room_id = format!("!{}", &create_id[1..]);
    let row = db
        .query_one(
            "SELECT (SELECT event_id FROM roomserver.events WHERE room_id = $1 AND NOT outlier ORDER BY depth DESC, event_id LIMIT 1),
                    (SELECT min(roomserver_internal.server_name_of(user_id)) FROM roomserver.room_members WHERE room_id = $1 AND membership = 'join')",
            &[&room_id],
        )
        .await
        .unwrap();
    let (latest, member_server): (String, String) = (row.get(0), row.get(1));
    let outsider = "s9.example";

    // The front end and the key server for the test clients.
    let tls = common::test_tls();
    let dir = std::env::temp_dir().join(format!("roomserver-http-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [("ca.pem", &tls.ca_pem), ("tls.crt", &tls.cert_pem), ("tls.key", &tls.key_pem)] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let member_key = ServerKey::generate();
    let outsider_key = ServerKey::generate();
    let key_server = common::start_key_server(
        &tls,
        HashMap::from([
            (member_server.clone(), member_key.key_response(&member_server, Duration::from_secs(3600), SystemTime::now())),
            (outsider.to_owned(), outsider_key.key_response(outsider, Duration::from_secs(3600), SystemTime::now())),
        ]),
    )
    .await;
    let key_server_url = format!("https://127.0.0.1:{}", key_server.address.port());
    let config_text = format!(
        "server_name = {our_name:?}\nlisten = {our_name:?}\ntls_certificate = \"tls.crt\"\ntls_private_key = \"tls.key\"\n\
         signing_key = \"signing.key\"\ndatabase_url = {url:?}\ntrusted_ca_file = \"ca.pem\"\ndatabase_pool_size = 2\n\
         [key_server_overrides]\n{member_server:?} = {key_server_url:?}\n{outsider:?} = {key_server_url:?}\n"
    );
    std::fs::write(dir.join("config.toml"), config_text).unwrap();
    let config = Config::load(&dir.join("config.toml")).unwrap();
    let built = roomserver_http::server::build(&config).unwrap();
    let (app, server_tls) = (built.federation, built.tls);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(roomserver_http::server::serve(listener, server_tls, app, async {
        let _ = stopped.await;
    }));

    let client = FederationClient::new(common::roots(&tls), BTreeMap::new());
    let member = || Some(Signer { origin: &member_server, key: &member_key });
    let outsider_signer = || Some(Signer { origin: outsider, key: &outsider_key });
    let get = |path: String, signer| {
        let (client, our_name) = (&client, &our_name);
        async move { get(client, our_name, &path, signer).await }
    };

    // Our keys: self-signed, naming us.
    let (status, keys) = get("/_matrix/key/v2/server".into(), None).await;
    assert_eq!(status, StatusCode::OK);
    roomserver_core::server_keys::verify_key_response(&keys, &our_name).unwrap();
    let (status, version) = get("/_matrix/federation/v1/version".into(), None).await;
    assert_eq!((status, version["server"]["name"].as_str()), (StatusCode::OK, Some("roomserver-http")));

    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let (room, latest_q) = (enc(&room_id), enc(&latest));

    // Unsigned: 401. Not in the room: 403. Unknown path: 404.
    let state_ids_path = format!("/_matrix/federation/v1/state_ids/{room}?event_id={latest_q}");
    let (status, body) = get(state_ids_path.clone(), None).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")));
    let (status, body) = get(state_ids_path.clone(), outsider_signer()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = get(format!("/_matrix/federation/v1/event/{latest_q}"), outsider_signer()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")), "{body}");
    let (status, body) = get("/_matrix/federation/v1/no_such_thing".into(), member()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_UNRECOGNIZED")));

    // Each read equals its SQL function's answer (origin_server_ts aside: the time of the call).
    let without_ts = |mut v: Value| {
        v.as_object_mut().unwrap().remove("origin_server_ts");
        v
    };
    let (status, body) = get(state_ids_path, member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, sql(&db, "SELECT roomserver.state_ids($1, $2)::text", &[&room_id, &latest]).await);
    assert!(!body["pdu_ids"].as_array().unwrap().is_empty());

    let (status, body) = get(format!("/_matrix/federation/v1/state/{room}?event_id={latest_q}"), member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, sql(&db, "SELECT roomserver.state($1, $2)::text", &[&room_id, &latest]).await);

    let (status, body) = get(format!("/_matrix/federation/v1/backfill/{room}?v={latest_q}&limit=10"), member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["origin"], json!(our_name));
    let expected = sql(&db, "SELECT roomserver.backfill($1, ARRAY[$2], 10, $3)::text", &[&room_id, &latest, &member_server]).await;
    assert_eq!(without_ts(body.clone()), without_ts(expected));
    assert_eq!(body["pdus"].as_array().unwrap().len(), 10);

    let create_q = enc(&create_id);
    let expected = without_ts(sql(&db, "SELECT roomserver.forwards_fill($1, ARRAY[$2], 5, $3)::text", &[&room_id, &create_id, &member_server]).await);
    for prefix in ["/_matrix/federation/v1", "/_matrix/federation/org.matrix.msc4000"] {
        let (status, body) = get(format!("{prefix}/forwards_fill/{room}?from_event_id={create_q}&limit=5"), member()).await;
        assert_eq!(status, StatusCode::OK, "{prefix}: {body}");
        assert_eq!(without_ts(body), expected, "{prefix}");
    }

    let (status, body) = get(format!("/_matrix/federation/v1/event/{latest_q}"), member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected = sql(&db, "SELECT roomserver.event($1, $2)::text", &[&latest, &member_server]).await;
    assert_eq!(without_ts(body), without_ts(expected));
    let (status, body) = get(format!("/_matrix/federation/v1/event/{}", enc("$unknown")), member()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")));

    let (status, body) = get(format!("/_matrix/federation/v1/event_auth/{room}/{latest_q}"), member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, sql(&db, "SELECT roomserver.event_auth($1, $2)::text", &[&room_id, &latest]).await);

    let (status, body) = get(format!("/_matrix/federation/v1/timestamp_to_event/{room}?ts=0&dir=f"), member()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event_id"], json!(create_id));
    let (status, body) = get(format!("/_matrix/federation/v1/timestamp_to_event/{room}?ts=0&dir=b"), member()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")), "nothing before 0");
    let (status, body) = get(format!("/_matrix/federation/v1/backfill/{room}?v={latest_q}&limit=0"), member()).await;
    assert_eq!((status, body["errcode"].as_str()), (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")));

    let gme = json!({"earliest_events": [create_id], "latest_events": [latest], "limit": 5});
    let path = format!("/_matrix/federation/v1/get_missing_events/{room}");
    let r = client.request(&our_name, Method::POST, &path, Some(&gme), member()).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let expected = sql(&db, "SELECT roomserver.get_missing_events($1, ARRAY[$2], ARRAY[$3], 5, 0, $4)::text", &[&room_id, &create_id, &latest, &member_server]).await;
    assert_eq!(r.json().unwrap(), expected);

    // The key server was asked once per origin, whatever the number of requests.
    assert_eq!(key_server.requests.load(Ordering::SeqCst), 2);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server).await.expect("the server stops").unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
