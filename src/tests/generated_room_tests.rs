use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;
    use pgrx::JsonB;
    use roomgen::{generate_vec, RoomConfig};
    use roomserver_core::canonical_json::to_canonical_string;
    use roomserver_core::{hashes, RoomVersion};
    use serde_json::Value;

    /// A deterministic shuffle (xorshift), so events arrive out of order.
    fn shuffled(mut v: Vec<Value>, seed: u64) -> Vec<Value> {
        let mut x = seed | 1;
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
        v
    }

    /// Generated rooms with forks, for every room version, ingested in a random order (create
    /// event first, then the rest as it comes, half one by one and half in one batch): every
    /// reference ends up known, nothing is broken, and every PDU comes back as it went in.
    #[pg_test]
    fn generated_forked_rooms_ingest_in_any_order() {
        for (i, rv) in roomserver_core::room_version::ALL.iter().enumerate() {
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
            };
            let (pdus, summary) = generate_vec(&config).expect("generated room");
            assert!(summary.merges > 0, "room version {} has no merges", rv.id);
            let create = pdus[0].clone();
            let rest = shuffled(pdus[1..].to_vec(), 7 + i as u64);
            let (one_by_one, batch) = rest.split_at(rest.len() / 2);
            Spi::get_one_with_args::<JsonB>("SELECT roomserver.ingest_event($1)", &[JsonB(create).into()]).unwrap();
            for pdu in one_by_one {
                Spi::get_one_with_args::<JsonB>("SELECT roomserver.ingest_event($1)", &[JsonB(pdu.clone()).into()]).unwrap();
            }
            let n = Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM roomserver.ingest_events($1)",
                &[JsonB(Value::Array(batch.to_vec())).into()],
            );
            assert_eq!(n, Ok(Some(batch.len() as i64)));

            let version = RoomVersion::from_id(rv.id).unwrap();
            for pdu in &pdus {
                let id = hashes::event_id(pdu, &version).unwrap();
                let back = Spi::get_one_with_args::<JsonB>("SELECT roomserver.pdu($1)", &[id.clone().into()]).unwrap().unwrap().0;
                assert_eq!(to_canonical_string(&back).unwrap(), to_canonical_string(pdu).unwrap(), "{id} in room version {}", rv.id);
            }
            let counts = Spi::get_two_with_args::<i64, i64>(
                "SELECT count(*) FILTER (WHERE known), count(*) FILTER (WHERE NOT known)
                 FROM roomserver.event_references WHERE room_id = $1",
                &[summary.room_id.clone().into()],
            )
            .unwrap();
            let edges: usize = pdus
                .iter()
                .map(|p| p["prev_events"].as_array().unwrap().len() + p["auth_events"].as_array().unwrap().len())
                .sum();
            assert_eq!(counts, (Some(edges as i64), Some(0)), "room version {}", rv.id);
        }
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM roomserver.check_integrity()"), Ok(Some(0)));
    }
}
