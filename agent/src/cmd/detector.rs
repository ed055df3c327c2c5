//! `herd-agent detector`: the detector's settings as `run` and `replay` use them, as JSON,
//! so that tools outside the agent (the lab evaluation) time their scenarios by them
//! rather than by a copy.

use herd_agent::features;

/// Prints the settings on one line of JSON.
pub fn run() -> anyhow::Result<()> {
    let config = features::detect_config(&features::names());
    let json = serde_json::json!({
        "threshold": config.threshold,
        "close_threshold": config.close_threshold,
        "open_m": config.open_m,
        "open_n": config.open_n,
        "close_after": config.close_after,
        "min_peers": config.min_peers,
        "max_share": config.max_share,
        "history": config.history,
        "warmup": config.warmup,
        "adapt_after": config.adapt_after,
        "forget_after": config.forget_after,
        "critical_score": config.critical_score,
        // The seasonal past of a container without peers: a day of `--interval` windows
        // (replay: of the recording's), in this many phases.
        "season_seconds": 86_400,
        "season_buckets": config.season_buckets,
    });
    println!("{json}");
    Ok(())
}
