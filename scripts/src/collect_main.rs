//! `netlat-collect`: deploy `netlat-capture` to the hosts of hosts.yaml,
//! capture on all of them at once, pull the Parquet files home, check
//! them, and run `netlat-analyze`. See `lab::collect`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use lab::collect::{self, ssh::SshSetup, Options};

const AFTER_HELP: &str = "\
Each host of HOSTS that captures gets the static netlat-capture (copied once with scp; its name
carries its sha256), a capture over ssh for --duration on its interfaces (sudo -n unless the login
is root), and its finished files pulled into OUT/HOST/, each verified by size and sha256. Once
every capture printed its ready line, --traffic runs (sh -c, output in OUT/traffic.log). ssh uses
your keys and ssh configuration, never passwords; host keys are checked (known_hosts).

OUT/collect.json records the run: running again with the same --out resumes it (pulls what is
missing, verifies what is there) instead of starting a new measurement.

Exit codes: 0 every host collected and checked; 1 some host missing or incomplete (the others'
data is collected; the report says why), or the traffic command or the analysis failed;
2 bad configuration or usage (nothing was contacted).";

/// Deploy, run and collect netlat captures over SSH.
#[derive(Debug, Parser)]
#[command(name = "netlat-collect", version, after_help = AFTER_HELP)]
struct Cli {
    /// Hosts file.
    #[arg(short = 'H', long = "hosts", value_name = "HOSTS", default_value = "conf/hosts.yaml")]
    hosts: PathBuf,
    /// Output folder: OUT/HOST/ per host, OUT/collect.json, OUT/analysis.txt.
    #[arg(short, long, value_name = "OUT", default_value = "out")]
    out: PathBuf,
    /// Capture duration, seconds (from each capture's start).
    #[arg(short, long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Command to run once every capture is ready (with sh -c, here).
    #[arg(long, value_name = "CMD")]
    traffic: Option<String>,
    /// Capture filter, e.g. 'udp and port 5001'.
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Extra netlat-capture option (repeatable), e.g. --capture-arg=--sample --capture-arg=10.
    #[arg(long = "capture-arg", value_name = "ARG", allow_hyphen_values = true)]
    capture_args: Vec<String>,
    /// netlat-capture to copy (default: the static one from scripts/build-static).
    #[arg(long, value_name = "PATH")]
    capture_bin: Option<PathBuf>,
    /// ssh configuration file (ssh -F); default: ~/.ssh/config.
    #[arg(short = 'F', long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Accept host keys of hosts not yet in known_hosts (changed keys are still refused).
    #[arg(long)]
    accept_new_host_keys: bool,
    /// ssh connect timeout, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u32,
    /// Tries per ssh/scp step (connect, copy, list, pull), with 1, 2, 4 s pauses.
    #[arg(long, value_name = "N", default_value_t = 3)]
    tries: u32,
    /// Seconds a capture may take to become ready.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    ready_timeout: u64,
    /// Seconds past --duration a capture may take to end.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    grace: u64,
    /// netlat-analyze to run on the result (default: next to this program).
    #[arg(long, value_name = "PATH")]
    analyze: Option<PathBuf>,
    /// Do not run netlat-analyze (overrides --analyze).
    #[arg(long)]
    no_analyze: bool,
    /// Remove each host's remote run folder once its files are home and checked.
    #[arg(long)]
    remove_remote: bool,
    /// Print the commands, run nothing.
    #[arg(long)]
    dry_run: bool,
    /// ssh program.
    #[arg(long, value_name = "PROG", default_value = "ssh", hide = true)]
    ssh: PathBuf,
    /// scp program.
    #[arg(long, value_name = "PROG", default_value = "scp", hide = true)]
    scp: PathBuf,
}

/// A sibling of this program's folder, or in the target folder of a cargo build.
fn near_exe(candidates: &[&str]) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    candidates.iter().map(|c| dir.join(c)).find(|p| p.exists())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let capture_bin = cli.capture_bin.clone().unwrap_or_else(|| {
        near_exe(&["../x86_64-unknown-linux-musl/release/netlat-capture", "netlat-capture"])
            .unwrap_or_else(|| PathBuf::from("netlat-capture (not found; run scripts/build-static)"))
    });
    let analyze = if cli.no_analyze {
        None
    } else {
        Some(cli.analyze.clone().or_else(|| near_exe(&["netlat-analyze"])).unwrap_or("netlat-analyze".into()))
    };
    let opts = Options {
        hosts_file: cli.hosts,
        out: cli.out,
        duration: cli.duration,
        capture_bin,
        ssh: SshSetup {
            ssh: cli.ssh,
            scp: cli.scp,
            config: cli.ssh_config,
            connect_timeout: cli.connect_timeout,
            accept_new_host_keys: cli.accept_new_host_keys,
        },
        traffic: cli.traffic,
        filter: cli.filter,
        capture_args: cli.capture_args,
        tries: cli.tries,
        ready_timeout: Duration::from_secs(cli.ready_timeout),
        grace: Duration::from_secs(cli.grace),
        analyze,
        remove_remote: cli.remove_remote,
        dry_run: cli.dry_run,
    };
    match collect::collect(&opts) {
        Ok(report) => {
            if !report.dry_run {
                for line in report.summary().lines() {
                    eprintln!("netlat-collect: {line}");
                }
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("netlat-collect: {e}");
            ExitCode::from(2)
        }
    }
}
