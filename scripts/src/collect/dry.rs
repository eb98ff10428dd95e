//! `--dry-run`: the commands a collection would run, in order, nothing run.
//! They are built by the same functions as the real ones.

use std::fmt::Write as _;

use conf::hosts::{HostsConf, RemotePath};

use super::{
    pull::partial_path,
    quote::{display, sh_join},
    remote::{self, SCRIPTS},
    ssh::Argv,
    CollectError, LocalBinary, Options,
};

/// An ssh argv for reading: the remote command line (the last argument)
/// shown as the remote shell gets it, its constant script as `<NAME>`.
fn ssh_display(argv: &Argv) -> String {
    let (line, head) = argv.split_last().expect("ssh argv");
    let mut line = line.to_string_lossy().into_owned();
    for (name, script) in SCRIPTS {
        if let Ok(prefix) = sh_join(&["sh", "-c", script, "sh"]) {
            line = line.replace(&prefix, &format!("<{name}>"));
        }
    }
    format!("{} {line}", display(head))
}

/// The plan as text: comments, then each command on one line.
pub fn plan(opts: &Options, conf: &HostsConf, bin: &LocalBinary, run_id: &str) -> Result<String, CollectError> {
    let arg = |e: super::HostError| CollectError::Usage(e.to_string());
    let mut s = String::new();
    let hosts: Vec<_> = conf.capture_hosts().collect();
    let _ = writeln!(s, "# netlat-collect --dry-run: run {run_id}, {} hosts; nothing is executed.", hosts.len());
    let _ = writeln!(
        s,
        "# Binary {} ({} bytes, sha256 {}{}).",
        bin.path.display(),
        bin.size,
        bin.sha256,
        if bin.is_static { ", static" } else { ", DYNAMIC" }
    );
    let _ = writeln!(s, "# Relative remote folders are resolved to absolute ones by the first command.");
    let _ = writeln!(
        s,
        "# ssh's last argument is the remote command line; <NAME> stands for 'sh' '-c' 'SCRIPT' 'sh',\n\
         # and the configured values reach SCRIPT only as \"$1\", \"$2\", ... The scripts:"
    );
    for (name, script) in SCRIPTS {
        let _ = writeln!(s, "# {name}:");
        for l in script.lines() {
            let _ = writeln!(s, "#   {l}");
        }
    }
    let out = std::path::absolute(&opts.out).unwrap_or_else(|_| opts.out.clone());
    for h in &hosts {
        let name = h.name.as_str();
        let base = conf.remote_dir(h);
        let run_dir = base.join("runs").and_then(|r| r.join(run_id)).map_err(CollectError::Usage)?;
        let bin_path = format!("{base}/bin/{}", remote::binary_name(&bin.sha256));
        let (partial, _) = remote::upload_paths(base, &bin.sha256).map_err(arg)?;
        let _ = writeln!(s, "\n# {name}: connect, create {base}/bin and {base}/runs, look for the binary");
        let _ = writeln!(s, "{}", ssh_display(&remote::prepare_argv(&opts.ssh, h, base, &bin.sha256).map_err(arg)?));
        let _ = writeln!(s, "# {name}: if absent, copy it, and install it only if its sha256 matches");
        let _ = writeln!(s, "{}", display(&opts.ssh.scp_to(&remote::target(h), &bin.path, partial.as_str())));
        let _ = writeln!(s, "{}", ssh_display(&remote::install_argv(&opts.ssh, h, base, &bin.sha256).map_err(arg)?));
        let spec = super::capture::spec(opts, conf, h, &bin_path, run_dir.as_str());
        let _ = writeln!(s, "# {name}: capture; ready once it prints `netlat-capture: ready:` on stderr");
        let _ = writeln!(s, "{}", ssh_display(&remote::capture_argv(&opts.ssh, &spec).map_err(arg)?));
    }
    if let Some(t) = &opts.traffic {
        let _ = writeln!(s, "\n# once every capture is ready (output to {}):", out.join("traffic.log").display());
        let _ = writeln!(s, "{}", display(&["sh", "-c", t]));
    }
    for h in &hosts {
        let name = h.name.as_str();
        let run_dir: RemotePath =
            conf.remote_dir(h).join("runs").and_then(|r| r.join(run_id)).map_err(CollectError::Usage)?;
        let local = out.join(name);
        let _ = writeln!(s, "\n# {name}: list finished files (size, sha256, name)");
        let _ = writeln!(s, "{}", ssh_display(&remote::list_argv(&opts.ssh, h, run_dir.as_str()).map_err(arg)?));
        let _ =
            writeln!(s, "# {name}: for each FILE: copy, verify size and sha256, rename to {}/FILE", local.display());
        let file = "FILE";
        let argv = opts.ssh.scp_from(&remote::target(h), &format!("{run_dir}/{file}"), &partial_path(&local, file));
        let _ = writeln!(s, "{}", display(&argv));
    }
    if let Some(a) = &opts.analyze {
        let mut argv = vec![a.display().to_string()];
        argv.extend(hosts.iter().map(|h| out.join(h.name.as_str()).display().to_string()));
        let _ = writeln!(s, "\n# analysis (table also in {})", out.join("analysis.txt").display());
        let _ = writeln!(s, "{}", display(&argv));
    }
    Ok(s)
}
