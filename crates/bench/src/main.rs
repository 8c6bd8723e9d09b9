//! `bench`: walstream beside Litestream 0.5.17 on moto behind a counting proxy (issue 10).
//! Run it through `scripts/bench.sh`, which starts moto, builds the release binaries and finds
//! Litestream; see that script for the command line.
mod proxy;
mod report;
mod run;
mod s3;
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use report::Results;
use run::Tool;
use scenarios::{Ctx, Opts};

#[derive(Parser, Debug)]
#[command(
    about = "walstream beside Litestream 0.5.17: idle lag, sustained load, restore, large database, idle fleet"
)]
struct Args {
    /// Smoke run: 1 counted round after the warm-up, small sizes.
    #[arg(long)]
    quick: bool,
    /// Counted rounds (after one uncounted warm-up round); default 5, 1 with --quick.
    #[arg(long)]
    rounds: Option<usize>,
    /// Scenarios, comma-separated: lag,load,catchup,restore,large,fleet (default all).
    #[arg(long, default_value = "lag,load,catchup,restore,large,fleet")]
    scenario: String,
    #[arg(long)]
    walstream: PathBuf,
    #[arg(long)]
    litestream: PathBuf,
    /// The repository root (for scripts/bench-idle.sh).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Scratch directory (databases, configs, logs).
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value = "bench/results/latest.json")]
    json: PathBuf,
    #[arg(long, default_value = "bench/results/latest.svg")]
    svg: PathBuf,
    /// Keeps the figures of an earlier JSON for the scenarios this run does not run (to re-run
    /// one scenario and keep one report).
    #[arg(long)]
    merge: Option<PathBuf>,
    /// Seconds of load per run (default 20, 5 with --quick).
    #[arg(long)]
    load_secs: Option<u64>,
    /// Commits measured in the idle-lag scenario (default 12).
    #[arg(long, default_value_t = 12)]
    lag_commits: usize,
    /// Size of the restore database in MB (default 300, 30 with --quick).
    #[arg(long)]
    restore_mb: Option<u64>,
    /// Size of the large database in MB (default 2000, 200 with --quick).
    #[arg(long)]
    large_mb: Option<u64>,
    /// Databases in the idle fleet (default 1000, 200 with --quick).
    #[arg(long)]
    fleet: Option<usize>,
    /// Idle window in seconds (default 120, 20 with --quick).
    #[arg(long)]
    fleet_window: Option<u64>,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let a = Args::parse();
    let q = a.quick;
    let moto = std::env::var("WALSTREAM_TEST_S3_ENDPOINT")
        .context("WALSTREAM_TEST_S3_ENDPOINT is not set (scripts/bench.sh starts moto)")?;
    let opts = Opts {
        rounds: a.rounds.unwrap_or(if q { 1 } else { 5 }),
        load_secs: a.load_secs.unwrap_or(if q { 5 } else { 20 }),
        lag_commits: a.lag_commits,
        restore_mb: a.restore_mb.unwrap_or(if q { 30 } else { 300 }),
        restores: if q { 3 } else { 5 },
        large_mb: a.large_mb.unwrap_or(if q { 200 } else { 2000 }),
        large_baseline_secs: if q { 10 } else { 30 },
        fleet: a.fleet.unwrap_or(if q { 200 } else { 1000 }),
        fleet_window_secs: a.fleet_window.unwrap_or(if q { 20 } else { 120 }),
        catchup_timeout_secs: if q { 120 } else { 600 },
        work: a.work.clone(),
    };
    std::fs::create_dir_all(&opts.work)?;
    let walstream = Tool {
        name: "walstream",
        bin: a.walstream.clone(),
    };
    let litestream = Tool {
        name: "litestream",
        bin: a.litestream.clone(),
    };
    for t in [&walstream, &litestream] {
        if !t.bin.exists() {
            bail!("{} not found at {}", t.name, t.bin.display());
        }
    }
    let proxy = proxy::Proxy::start(&moto)?;
    eprintln!(
        "bench: moto at {moto}, counting proxy at {}",
        proxy.endpoint()
    );
    let ctx = Ctx {
        moto,
        proxy,
        opts: opts.clone(),
        litestream: litestream.clone(),
    };
    let want: Vec<&str> = a.scenario.split(',').map(str::trim).collect();
    let has = |s: &str| want.contains(&s);
    let mut res = Results::default();
    let mut warm = Results::default();
    let started = Instant::now();
    // Tools alternate, and which goes first alternates by round.
    let order = |round: usize| {
        if round.is_multiple_of(2) {
            [walstream.clone(), litestream.clone()]
        } else {
            [litestream.clone(), walstream.clone()]
        }
    };
    type Scenario = fn(&Ctx, &Tool, &mut Results) -> Result<()>;
    let per_round: Vec<(&str, Scenario)> = vec![
        ("lag", scenarios::idle_lag),
        ("load", scenarios::load),
        ("catchup", scenarios::load_catchup),
    ];
    for (name, f) in per_round {
        if !has(name) {
            continue;
        }
        for round in 0..=opts.rounds {
            for tool in order(round) {
                eprintln!(
                    "bench: {name} round {round}{} {}",
                    if round == 0 { " (warm-up)" } else { "" },
                    tool.name
                );
                let out = if round == 0 { &mut warm } else { &mut res };
                if let Err(e) = f(&ctx, &tool, out) {
                    res.note(name, tool.name, &format!("round {round} failed: {e:#}"));
                }
            }
        }
    }
    if has("restore") {
        let mut setups = Vec::new();
        for tool in [&walstream, &litestream] {
            eprintln!(
                "bench: restore setup {} ({} MB)",
                tool.name, opts.restore_mb
            );
            match scenarios::restore_setup(&ctx, tool, &mut res) {
                Ok(s) => setups.push(s),
                Err(e) => res.note("restore", tool.name, &format!("setup failed: {e:#}")),
            }
        }
        for round in 0..=opts.restores {
            let mut idx: Vec<usize> = (0..setups.len()).collect();
            if !round.is_multiple_of(2) {
                idx.reverse();
            }
            for i in idx {
                let st = &setups[i];
                eprintln!("bench: restore round {round} {}", st.tool.name);
                let out = if round == 0 { &mut warm } else { &mut res };
                if let Err(e) = scenarios::restore_round(&ctx, st, out) {
                    res.note(
                        "restore",
                        st.tool.name,
                        &format!("round {round} failed: {e:#}"),
                    );
                }
            }
        }
        for st in &setups {
            if let Err(e) = scenarios::restore_file(st, &mut res) {
                res.note(
                    "restore",
                    st.tool.name,
                    &format!("file restore failed: {e:#}"),
                );
            }
        }
        for st in &setups {
            std::fs::remove_dir_all(&st.dir).ok();
        }
    }
    if has("large") {
        eprintln!("bench: large database setup ({} MB)", opts.large_mb);
        let db = scenarios::large_setup(&ctx)?;
        for round in 0..=opts.rounds {
            let out = if round == 0 { &mut warm } else { &mut res };
            eprintln!("bench: large round {round} baseline");
            if let Err(e) = scenarios::large_baseline(&ctx, &db, out) {
                res.note(
                    "large",
                    "none",
                    &format!("round {round} baseline failed: {e:#}"),
                );
            }
            for tool in order(round) {
                eprintln!("bench: large round {round} {}", tool.name);
                let out = if round == 0 { &mut warm } else { &mut res };
                if let Err(e) = scenarios::large(&ctx, &tool, &db, out) {
                    res.note("large", tool.name, &format!("round {round} failed: {e:#}"));
                }
            }
        }
        if let Some(d) = db.parent() {
            std::fs::remove_dir_all(d).ok();
        }
    }
    if has("fleet") {
        eprintln!(
            "bench: idle fleet through scripts/bench-idle.sh ({} dbs, {} s)",
            opts.fleet, opts.fleet_window_secs
        );
        if let Err(e) = scenarios::fleet(&ctx, &a.repo, &mut res) {
            res.note("idle fleet", "both", &format!("failed: {e:#}"));
        }
    }
    if let Some(m) = &a.merge {
        let ran: Vec<String> = res
            .metrics
            .iter()
            .map(|m| m.scenario.clone())
            .chain(res.notes.iter().map(|n| n.0.clone()))
            .collect();
        res.merge_from(m, &ran)?;
    }
    let table = res.table();
    println!("\n{table}");
    let meta = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "quick": q,
        "opts": opts,
        "elapsed_secs": started.elapsed().as_secs(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "litestream": litestream.bin,
        "walstream": walstream.bin,
        "warmup": warm.metrics,
    });
    res.write_json(&a.json, meta)?;
    let title = format!(
        "walstream vs Litestream 0.5.17 ({} run, {} counted round(s); green = walstream better)",
        if q { "quick" } else { "full" },
        opts.rounds
    );
    res.write_svg(&a.svg, &title)?;
    let md = a.json.with_extension("md");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    eprintln!(
        "bench: wrote {}, {} and {} in {:.0} s",
        a.json.display(),
        md.display(),
        a.svg.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
