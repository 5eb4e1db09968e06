//! Matching benchmark on the citylots-like corpus, our matcher and the `quamina` crate side
//! by side in the same run, on the same events.
//!
//! Generate the corpus once (about 430 MB), then run:
//!
//! ```text
//! python3 gen_data.py --out DATA_DIR        # the shared matching-benchmark generator
//! cargo bench -p switchyard-filter --bench citylots -- --data DATA_DIR [--sets A,B] [--json FILE] [--repeat N]
//! ```
//!
//! Our matcher runs as the router runs it, `Matcher::matches_valid_json`: every message the
//! router publishes has passed `serde_json`'s check as the request was parsed, so the parts
//! of a matched body no policy reads are not validated again, only searched for the little
//! that check lets through (see the crate README). The corpus is such text.
//!
//! `--data` may also come from `SWITCHYARD_BENCH_DATA`. Each set: warm up on the first 20,000
//! events, time whole passes, one of ours and one of quamina's in turn (so that other load on
//! the machine falls on both alike), keep each engine's best of `--repeat` (3). `MULTIFIELD3*`
//! sets use the first 20,000 events (2,000 for `MULTIFIELD3_N=10000`), as the reference
//! harness does.
//! Sets that need `shellstyle` or `regexp` have no SNS equivalent and are skipped. With
//! `--json FILE`, one JSON object per set and engine is appended in the reference harness's
//! format (`set, engine, mode, threads, events, eps_best, eps_median, total_matches,
//! counts_checksum`, `counts` for sets of at most 40 patterns), so `compare.py` can merge it.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use switchyard_filter::{Attributes, MatcherBuilder, Policy, Scope};

/// Events used to warm caches and branch predictors before timing.
const WARMUP_EVENTS: usize = 20_000;
/// Sets over this many patterns report only a checksum of their per-pattern counts.
const MAX_LISTED_COUNTS: usize = 40;
/// quamina 0.7.0 panics on more than 255 patterns sharing one value; MULTIFIELD3 sets from
/// this size up trigger it.
const QUAMINA_MULTIFIELD_PANIC_N: usize = 1000;

struct Args {
    data: String,
    sets: Option<Vec<String>>,
    json: Option<String>,
    repeat: usize,
}

fn usage_exit() -> ! {
    eprintln!(
        "usage: cargo bench -p switchyard-filter --bench citylots -- --data DIR [--sets A,B] [--json FILE] [--repeat N]\n\
         DIR holds the output of the shared generator: python3 gen_data.py --out DIR\n\
         (or set SWITCHYARD_BENCH_DATA=DIR)"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        data: std::env::var("SWITCHYARD_BENCH_DATA").unwrap_or_default(),
        sets: None,
        json: None,
        repeat: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let val = || argv.get(i + 1).cloned().unwrap_or_else(|| usage_exit());
        match argv[i].as_str() {
            "--data" => a.data = val(),
            "--sets" => a.sets = Some(val().split(',').map(str::to_owned).collect()),
            "--json" => a.json = Some(val()),
            "--repeat" => a.repeat = val().parse().unwrap_or_else(|_| usage_exit()),
            "--bench" => {
                i += 1;
                continue;
            }
            _ => usage_exit(),
        }
        i += 2;
    }
    if a.data.is_empty() || !std::path::Path::new(&a.data).join("rulesets.json").exists() {
        eprintln!("no corpus found (need DIR/rulesets.json)");
        usage_exit();
    }
    a
}

fn load_lines(path: &str, limit: usize) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let mut v = Vec::new();
    for line in std::io::BufReader::with_capacity(1 << 20, f).split(b'\n') {
        let l = line.expect("read corpus");
        if l.is_empty() {
            continue;
        }
        v.push(l);
        if limit > 0 && v.len() >= limit {
            break;
        }
    }
    v
}

fn fnv64(counts: &BTreeMap<String, usize>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, c) in counts {
        for b in format!("{k}={c};").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Run {
    eps_best: f64,
    eps_median: f64,
    total: usize,
    counts: BTreeMap<String, usize>,
    add_ms: f64,
}

/// Matches one event, reporting the index of every pattern it matches.
type OneEvent<'a> = dyn FnMut(&[u8], &mut dyn FnMut(usize)) + 'a;

/// Time whole passes over `events` for each engine, one pass of each in turn, so that load
/// from elsewhere on the machine falls on both alike; keep each engine's rates. The first
/// pass also counts matches per pattern.
fn time_interleaved(
    events: &[Vec<u8>],
    repeat: usize,
    engines: &mut [&mut OneEvent<'_>],
) -> Vec<Run> {
    for one in engines.iter_mut() {
        for e in &events[..events.len().min(WARMUP_EVENTS)] {
            one(e, &mut |_| {});
        }
    }
    let mut runs: Vec<(Vec<f64>, usize, HashMap<usize, usize>)> =
        engines.iter().map(|_| Default::default()).collect();
    for r in 0..repeat.max(1) {
        for (one, (eps, total, per_pattern)) in engines.iter_mut().zip(&mut runs) {
            let t = Instant::now();
            let mut n = 0usize;
            if r == 0 {
                for e in events {
                    one(e, &mut |i| {
                        n += 1;
                        *per_pattern.entry(i).or_default() += 1;
                    });
                }
                *total = n;
            } else {
                for e in events {
                    one(e, &mut |_| n += 1);
                }
            }
            eps.push(events.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    runs.into_iter()
        .map(|(mut eps, total, per_pattern)| {
            eps.sort_by(f64::total_cmp);
            Run {
                eps_best: *eps.last().expect("one pass"),
                eps_median: eps[eps.len() / 2],
                total,
                counts: per_pattern
                    .into_iter()
                    .map(|(i, c)| (i.to_string(), c))
                    .collect(),
                add_ms: 0.0,
            }
        })
        .collect()
}

fn main() {
    let args = parse_args();
    let rs: Value = serde_json::from_slice(
        &std::fs::read(format!("{}/rulesets.json", args.data)).expect("read rulesets.json"),
    )
    .expect("rulesets.json is JSON");
    let rs = rs.as_object().expect("rulesets.json is an object");
    let mut json_out = args.json.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .expect("open --json file")
    });

    compile_footprint(rs);

    let names: Vec<String> = match &args.sets {
        Some(s) => s.clone(),
        None => {
            let mut n: Vec<String> = rs.keys().cloned().collect();
            n.sort();
            n
        }
    };
    let mut corpora: HashMap<(String, usize), Vec<Vec<u8>>> = HashMap::new();
    println!(
        "\n{:<22} {:>8} {:>12} {:>12} {:>7} {:>10} {:>12}  note",
        "set", "patterns", "ours eps", "quamina eps", "ratio", "counts eq", "matches"
    );
    let mut notes = Vec::new();
    for name in names {
        let Some(set) = rs.get(&name) else {
            eprintln!("no such set {name}");
            continue;
        };
        let needs: Vec<&str> = set["needs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let pats: Vec<(String, String)> = set["patterns"]
            .as_array()
            .expect("patterns")
            .iter()
            .map(|p| {
                (
                    p[0].as_str().expect("name").to_owned(),
                    p[1].as_str().expect("pattern").to_owned(),
                )
            })
            .collect();
        if needs.iter().any(|n| *n == "shellstyle" || *n == "regexp") {
            println!(
                "{name:<22} {:>8}  skipped: needs {} (no SNS equivalent)",
                pats.len(),
                needs.join(",")
            );
            continue;
        }
        let limit = if name == "MULTIFIELD3_N=10000" {
            2_000
        } else if name.starts_with("MULTIFIELD3") {
            20_000
        } else {
            0
        };
        let data = set["data"].as_str().expect("data").to_owned();
        let events = corpora
            .entry((data.clone(), limit))
            .or_insert_with(|| load_lines(&format!("{}/{data}", args.data), limit));

        // Ours, matching as the router does.
        let t0 = Instant::now();
        let mut b = MatcherBuilder::new();
        let mut refused = None;
        for (i, (pname, pj)) in pats.iter().enumerate() {
            match Policy::parse_str(pj) {
                Ok(p) => b
                    .add(i as u32, &p, Scope::MessageBody)
                    .expect("body scope takes any policy"),
                Err(e) => {
                    refused = Some(format!("{pname}: {e}"));
                    break;
                }
            }
        }
        if let Some(r) = refused {
            println!("{name:<22} {:>8}  skipped by ours: {r}", pats.len());
            continue;
        }
        let m = b.build();
        let add_ms = t0.elapsed().as_secs_f64() * 1e3;
        let attrs = Attributes::new();
        let mut out = Vec::new();
        let mut ours_one = |e: &[u8], f: &mut dyn FnMut(usize)| {
            out.clear();
            m.matches_valid_json(e, &attrs, &mut out);
            for &i in &out {
                f(i as usize);
            }
        };

        // quamina, where it works, timed in turn with ours.
        let n_multi = name
            .strip_prefix("MULTIFIELD3_N=")
            .and_then(|n| n.parse::<usize>().ok());
        let (ours, q): (Run, Result<Run, String>) =
            if n_multi.is_some_and(|n| n >= QUAMINA_MULTIFIELD_PANIC_N) {
                let ours = time_interleaved(events, args.repeat, &mut [&mut ours_one]);
                let ours = ours.into_iter().next().expect("one engine");
                (
                    ours,
                    Err("quamina 0.7.0 panics on MULTIFIELD3_N>=1000".to_owned()),
                )
            } else {
                match with_quamina(&pats, events, args.repeat, &mut ours_one) {
                    Ok((ours, q)) => (ours, Ok(q)),
                    Err(e) => {
                        let ours = time_interleaved(events, args.repeat, &mut [&mut ours_one]);
                        (ours.into_iter().next().expect("one engine"), Err(e))
                    }
                }
            };
        let ours = Run { add_ms, ..ours };
        let named = |r: &Run| -> BTreeMap<String, usize> {
            r.counts
                .iter()
                .map(|(i, c)| (pats[i.parse::<usize>().expect("index")].0.clone(), *c))
                .collect()
        };
        let ours_counts = named(&ours);
        emit(
            &mut json_out,
            &name,
            "switchyard-filter",
            pats.len(),
            events.len(),
            &ours,
            &ours_counts,
        );
        let (q_eps, ratio, eq) = match &q {
            Ok(r) => {
                let qc = named(r);
                emit(
                    &mut json_out,
                    &name,
                    "quamina-rs 0.7.0",
                    pats.len(),
                    events.len(),
                    r,
                    &qc,
                );
                let eq = qc == ours_counts;
                if !eq {
                    notes.push(format!(
                        "{name}: ours {} matches, quamina {}: {}",
                        ours.total,
                        r.total,
                        explain(&name)
                    ));
                }
                (
                    format!("{:.0}", r.eps_best),
                    format!("{:.2}x", ours.eps_best / r.eps_best),
                    if eq { "yes" } else { "NO" }.to_owned(),
                )
            }
            Err(e) => {
                notes.push(format!("{name}: quamina not run: {e}"));
                ("-".to_owned(), "-".to_owned(), "-".to_owned())
            }
        };
        let at = if events.len() < 200_000 {
            format!(" @{}k events", events.len() / 1000)
        } else {
            String::new()
        };
        println!(
            "{name:<22} {:>8} {:>12.0} {q_eps:>12} {ratio:>7} {eq:>10} {:>12}  {at}",
            pats.len(),
            ours.eps_best,
            ours.total
        );
    }
    if !notes.is_empty() {
        println!("\nnotes:");
        for n in notes {
            println!("  {n}");
        }
    }
}

/// Why our counts may legitimately differ from quamina's on a set.
fn explain(set: &str) -> &'static str {
    match set {
        "CITYLOTS4" => {
            "SNS compares numbers to 1e-6 (\"five digits of accuracy\"), so the Geometry pattern also matches coordinates within half a millionth of 37.807807921694092; quamina compares the exact value"
        }
        "ANYTHING-BUT" | "COMBO" => {
            "FROM_ST is null in about 1% of events; in SNS `anything-but` needs a value (null is not one, as for `exists`), quamina treats null as a value other than \"441\""
        }
        "NUMERIC" => {
            "SNS compares numbers to 1e-6, so coordinates within half a millionth of a `<`/`>` bound compare equal to it; quamina compares exact values"
        }
        _ => "unexpected difference",
    }
}

/// Build quamina on `pats`, then time it and `ours` in turn: `(ours, quamina)`. An error
/// when quamina refuses the patterns or panics (then `ours` is to be timed alone).
fn with_quamina(
    pats: &[(String, String)],
    events: &[Vec<u8>],
    repeat: usize,
    ours: &mut OneEvent<'_>,
) -> Result<(Run, Run), String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<(Run, Run), String> {
        let t0 = Instant::now();
        // The default automaton budget rejects large sets; lift it as the reference harness does.
        let mut q: quamina::Quamina<usize> = quamina::QuaminaBuilder::new()
            .with_arena_byte_budget(1 << 30)
            .build()
            .map_err(|e| format!("{e:?}"))?;
        for (i, (_, pj)) in pats.iter().enumerate() {
            q.add_pattern(i, pj)
                .map_err(|e| format!("add_pattern: {e:?}"))?;
        }
        let add_ms = t0.elapsed().as_secs_f64() * 1e3;
        let mut theirs = |e: &[u8], f: &mut dyn FnMut(usize)| {
            if let Ok(m) = q.matches_for_event(e) {
                for i in m {
                    f(i);
                }
            }
        };
        let mut runs = time_interleaved(events, repeat, &mut [ours, &mut theirs]).into_iter();
        let ours = runs.next().expect("ours");
        let theirs = runs.next().expect("quamina");
        Ok((ours, Run { add_ms, ..theirs }))
    }));
    std::panic::set_hook(hook);
    match r {
        Ok(x) => x.map_err(|e| e.chars().take(100).collect()),
        Err(_) => Err("panicked".to_owned()),
    }
}

fn emit(
    out: &mut Option<std::fs::File>,
    set: &str,
    engine: &str,
    patterns: usize,
    events: usize,
    r: &Run,
    counts: &BTreeMap<String, usize>,
) {
    let Some(f) = out else { return };
    let mut o = json!({"set": set, "engine": engine, "mode": "default", "threads": 1, "patterns": patterns,
        "add_ms": r.add_ms, "events": events, "eps_best": r.eps_best, "eps_median": r.eps_median,
        "total_matches": r.total, "counts_checksum": fnv64(counts)});
    if patterns <= MAX_LISTED_COUNTS {
        o["counts"] = json!(counts);
    }
    writeln!(f, "{o}").expect("write --json file");
}

/// Compile time and memory of 100,000 subscriptions (the `EXACT_N=100000` set), and the
/// single-field rate target's set size for reference.
fn compile_footprint(rs: &serde_json::Map<String, Value>) {
    let Some(set) = rs.get("EXACT_N=100000") else {
        return;
    };
    let texts: Vec<&str> = set["patterns"]
        .as_array()
        .expect("patterns")
        .iter()
        .map(|p| p[1].as_str().expect("pattern"))
        .collect();
    let before = rss_kb();
    let t0 = Instant::now();
    let mut b = MatcherBuilder::new();
    for (i, t) in texts.iter().enumerate() {
        b.add(
            i as u32,
            &Policy::parse_str(t).expect("valid"),
            Scope::MessageBody,
        )
        .expect("body scope");
    }
    let m = b.build();
    let secs = t0.elapsed().as_secs_f64();
    let after = rss_kb();
    println!(
        "compile {} subscriptions (parse + build): {:.3} s, RSS +{:.1} MB ({} policies)",
        texts.len(),
        secs,
        after.saturating_sub(before) as f64 / 1024.0,
        m.policy_count()
    );
    drop(m);
}
