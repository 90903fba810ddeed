//! `roomgen`: writes a generated room as one compact JSON PDU per line.

use std::io::{self, BufWriter, Write};
use std::time::Instant;

use roomgen::{format_line, generate, OutputFormat, RoomConfig};

const USAGE: &str = "usage: roomgen [--seed N] [--version V] [--members N] [--servers N] [--events N]
               [--fork-every N] [--fork-width N] [--fork-depth N] [--churn F] [--power-share F]
               [--format jsonl|copy] [--out FILE|-] [--sample] [--quiet]
  --power-share F  share of the drawn power-level changes that happen (default 1); the others
             become topic or display name changes
  --sample   the bundled demo room (v12, 40 events); other room flags are ignored
  --format   jsonl (default) or copy: PostgreSQL COPY text format, backslashes doubled";

fn main() {
    match run() {
        Ok(()) => {}
        Err(msg) => {
            eprintln!("roomgen: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, String> {
    let v = value.ok_or_else(|| format!("{flag} needs a value"))?;
    v.parse().map_err(|_| format!("bad value for {flag}: {v}"))
}

fn run() -> Result<(), String> {
    let mut cfg = RoomConfig::default();
    let mut out = "-".to_owned();
    let mut format = OutputFormat::Jsonl;
    let mut sample = false;
    let mut quiet = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--seed" => cfg.seed = parse(&flag, args.next())?,
            "--version" => cfg.room_version = parse(&flag, args.next())?,
            "--members" => cfg.members = parse(&flag, args.next())?,
            "--servers" => cfg.servers = parse(&flag, args.next())?,
            "--events" => cfg.events = parse(&flag, args.next())?,
            "--fork-every" => cfg.fork_every = parse(&flag, args.next())?,
            "--fork-width" => cfg.fork_width = parse(&flag, args.next())?,
            "--fork-depth" => cfg.fork_depth = parse(&flag, args.next())?,
            "--churn" => cfg.state_churn = parse(&flag, args.next())?,
            "--power-share" => cfg.power_share = parse(&flag, args.next())?,
            "--out" => out = parse(&flag, args.next())?,
            "--format" => {
                format = match parse::<String>(&flag, args.next())?.as_str() {
                    "jsonl" => OutputFormat::Jsonl,
                    "copy" => OutputFormat::Copy,
                    other => return Err(format!("unknown format {other}")),
                }
            }
            "--sample" => sample = true,
            "--quiet" => quiet = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if sample {
        cfg = RoomConfig::sample();
    }
    let writer: Box<dyn Write> = if out == "-" {
        Box::new(io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&out).map_err(|e| format!("cannot create {out}: {e}"))?)
    };
    let mut writer = BufWriter::with_capacity(1 << 20, writer);
    let started = Instant::now();
    let mut count: usize = 0;
    let mut write_error: Option<io::Error> = None;
    let total = cfg.events;
    let summary = generate(&cfg, |event| {
        if write_error.is_some() {
            return;
        }
        let line = format_line(event, format);
        if let Err(e) = writer.write_all(line.as_bytes()) {
            write_error = Some(e);
        }
        count += 1;
        if !quiet && count.is_multiple_of(100_000) {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("roomgen: {count}/{total} events, {:.1}s, {:.0} events/s", secs, count as f64 / secs);
        }
    })
    .map_err(|e| format!("generation failed: {e:?}"))?;
    if let Some(e) = write_error {
        return Err(format!("write failed: {e}"));
    }
    writer.flush().map_err(|e| format!("write failed: {e}"))?;
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "roomgen: room {} (v{}): {} events ({} state), {} forks, {} merges, max depth {}, {} joined at end, {:.2}s",
            summary.room_id, summary.room_version, summary.events, summary.state_events, summary.forks, summary.merges,
            summary.max_depth, summary.final_joined_members, secs
        );
        eprintln!("roomgen: kinds {:?}", summary.kinds);
    }
    Ok(())
}
