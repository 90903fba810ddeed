use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let got = Spi::get_one::<String>(r#"SELECT roomserver.canonical_json('{"b": 2, "a": {"d": "日", "c": null}}')"#);
        assert_eq!(got, Ok(Some(r#"{"a":{"c":null,"d":"日"},"b":2}"#.to_owned())));
    }

    #[pg_test(error = "canonical_json: \"x\" is not an integer (1.5); canonical JSON allows integers only")]
    fn canonical_json_rejects_floats() {
        Spi::run(r#"SELECT roomserver.canonical_json('{"x": 1.5}')"#).unwrap();
    }

    #[pg_test]
    fn event_id_for_v3_and_v4_alphabets() {
        let pdu = r#"'{"type":"m.room.message","room_id":"!r:x","sender":"@a:x","content":{"body":"b"},"depth":1,"prev_events":[],"auth_events":[],"origin_server_ts":0,"hashes":{"sha256":"x"}}'"#;
        let v3 = Spi::get_one::<String>(&format!("SELECT roomserver.event_id_for({pdu}, '3')")).unwrap().unwrap();
        let v4 = Spi::get_one::<String>(&format!("SELECT roomserver.event_id_for({pdu}, '4')")).unwrap().unwrap();
        assert_eq!(v3.replace('+', "-").replace('/', "_"), v4);
        assert!(v3.starts_with('$') && v3.len() == 44);
    }

    #[pg_test]
    fn redact_keeps_membership() {
        let got = Spi::get_one::<pgrx::JsonB>(
            r#"SELECT roomserver.redact('{"type":"m.room.member","content":{"membership":"join","displayname":"x"},"unsigned":{}}', '10')"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(got.0, serde_json::json!({"type": "m.room.member", "content": {"membership": "join"}}));
    }

    #[pg_test(error = "redact: unsupported room version \"13\" (supported: 1 to 12)")]
    fn redact_rejects_unknown_versions() {
        Spi::run(r#"SELECT roomserver.redact('{}', '13')"#).unwrap();
    }

    #[pg_test]
    fn content_hash_matches_the_spec_example() {
        let got = Spi::get_one::<String>(
            r#"SELECT roomserver.content_hash('{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}')"#,
        );
        assert_eq!(got, Ok(Some("5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos".to_owned())));
    }
}
