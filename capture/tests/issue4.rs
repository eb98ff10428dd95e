//! Issue 4, kernel side of user space: field offsets from BTF agree with an
//! independent reader (pahole), and `--list-probes` tells on this kernel
//! which probe points work and why the others do not.
//!
//! Kernel tests need root; in CI (`CI` set) a test that cannot run fails
//! instead of skipping (the project rule, as `scripts::testing::kernel_test`).

mod common;
use common::kernel_test;

use std::{path::Path, process::Command};

use capture::btf::{offsets, Btf, VMLINUX};
use capture_common::offsets::NONE;

/// `pahole -C NAME` of the running kernel.
fn pahole(name: &str) -> String {
    let out = Command::new("pahole")
        .args(["-C", name, VMLINUX])
        .output()
        .expect("pahole runs (Debian package dwarves; scripts/bootstrap installs it)");
    assert!(out.status.success(), "pahole -C {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `(offset, size, type)` of member `member` in pahole's layout of a struct:
/// members of anonymous structs and unions count (pahole prints their offsets
/// from the outer struct); members of named inline ones do not.
fn pahole_member(layout: &str, member: &str) -> Option<(u32, u32, String)> {
    let lines: Vec<&str> = layout.lines().collect();
    let mut hidden = vec![false; lines.len()];
    let mut open = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let code = l.split("/*").next().unwrap_or("").trim();
        if code.ends_with('{') {
            open.push(i);
        } else if let Some(rest) = code.strip_prefix('}') {
            let start = open.pop().expect("balanced braces");
            let name = rest.split("__attribute__").next().unwrap_or("").trim_end_matches(';').trim();
            if !name.is_empty() && !open.is_empty() {
                hidden[start + 1..i].iter_mut().for_each(|h| *h = true);
            }
        }
    }
    lines.iter().zip(&hidden).filter(|(_, h)| !**h).find_map(|(l, _)| {
        let (code, comment) = l.split_once("/*")?;
        let code = code.trim().strip_suffix(';')?;
        // `struct sk_buff_head reader_queue __attribute__((__aligned__(64)))`
        let code = code.split(" __attribute__").next()?.trim_end();
        let (ty, name) = code.rsplit_once(|c: char| c.is_whitespace() || c == '*')?;
        let name = name.split('[').next()?;
        if name != member || code.ends_with('}') {
            return None;
        }
        let mut nums = comment.trim_end_matches("*/").split_whitespace();
        let offset = nums.next()?.trim_end_matches(':').parse().ok()?;
        let size = nums.next()?.parse().ok()?;
        let ty = code[..ty.len() + 1].trim().trim_end_matches('*').trim().to_owned();
        Some((offset, size, ty))
    })
}

/// Resolves `"sock.__sk_common.skc_daddr"` with pahole, one struct at a time.
fn pahole_path(path: &str) -> Option<(u32, u32)> {
    let mut parts = path.split('.');
    let mut strukt = parts.next()?.to_owned();
    let mut offset = 0;
    let mut size = 0;
    for part in parts {
        let (off, sz, ty) = pahole_member(&pahole(&strukt), part)?;
        offset += off;
        size = sz;
        strukt = ty.trim_start_matches("struct ").trim_start_matches("union ").trim().to_owned();
    }
    Some((offset, size))
}

#[test]
fn pahole_layout_parsing() {
    let layout = "struct s {\n\tunion {\n\t\tstruct {\n\t\t\tint a; /* 8 4 */\n\t\t}; /* 8 4 */\n\t}; /* 8 4 */\n\
                  \tstruct {\n\t\tint b; /* 0 4 */\n\t} inner; /* 12 4 */\n\tint b; /* 16 4 */\n\
                  \tstruct sock_common * p; /* 24 8 */\n\
                  \tstruct sk_buff_head q __attribute__((__aligned__(64))); /* 64 24 */\n};\n";
    assert_eq!(pahole_member(layout, "a"), Some((8, 4, "int".into())));
    assert_eq!(pahole_member(layout, "b"), Some((16, 4, "int".into())));
    assert_eq!(pahole_member(layout, "p"), Some((24, 8, "struct sock_common".into())));
    assert_eq!(pahole_member(layout, "inner").map(|m| m.0), Some(12));
    assert_eq!(pahole_member(layout, "q"), Some((64, 24, "struct sk_buff_head".into())));
    assert_eq!(pahole_member(layout, "c"), None);
}

#[test]
fn issue4_offsets_match_this_kernel() {
    if !kernel_test("issue4_offsets_match_this_kernel") {
        return;
    }
    let btf = Btf::from_sys_fs().unwrap();
    let resolved = offsets::resolve(&btf).unwrap();
    let mut checked = Vec::new();
    for spec in offsets::SPECS {
        let ours = (spec.get)(&resolved);
        match pahole_path(spec.path) {
            Some((offset, size)) => {
                assert_eq!(u32::from(ours), offset, "{spec:?}: BTF reader says {ours}, pahole {offset}");
                assert_eq!(btf.field(spec.path).unwrap().size, size, "{spec:?}: size");
                checked.push(format!("{}={ours}", spec.name));
            }
            None => {
                assert!(!spec.required, "{spec:?}: pahole does not find it");
                assert_eq!(ours, NONE, "{spec:?}: pahole does not find it, the reader does");
            }
        }
    }
    assert_eq!(u32::from(resolved.skb_header_size), pahole_path("sk_buff.network_header").unwrap().1);
    eprintln!("checked against pahole: {}", checked.join(" "));
    assert_eq!(checked.len(), offsets::SPECS.len(), "every field exists on this kernel");
}

fn netlat_capture(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netlat-capture")).args(args).output().unwrap()
}

const TRACEPOINTS: [&str; 17] = [
    "sock:sock_send_length",
    "tcp:tcp_sendmsg_locked",
    "net:net_dev_queue",
    "qdisc:qdisc_enqueue",
    "qdisc:qdisc_dequeue",
    "net:net_dev_start_xmit",
    "net:net_dev_xmit",
    "net:napi_gro_receive_entry",
    "net:netif_receive_skb",
    "tcp:tcp_probe",
    "sock:sk_data_ready",
    "skb:skb_copy_datagram_iovec",
    "sock:sock_recv_length",
    "skb:kfree_skb",
    "tcp:tcp_retransmit_skb",
    "sched:sched_wakeup",
    "sched:sched_switch",
];

#[test]
fn issue4_list_probes_explains_unavailable() {
    if !kernel_test("issue4_list_probes_explains_unavailable") {
        return;
    }
    let out = netlat_capture(&["--list-probes"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{table}");
    let rows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let row = |kind: &str, target: &str| {
        let r = rows.iter().find(|r| r.len() > 5 && r[3] == kind && r[4] == target);
        r.unwrap_or_else(|| panic!("no {kind} {target} row in\n{table}")).clone()
    };
    // The tracepoints issue 4 names all work here, as tp_btf.
    for tp in TRACEPOINTS {
        let r = row("tracepoint", tp);
        assert_eq!(r[5..].join(" "), "yes (tp_btf)", "{tp}");
    }
    for r in ["xdp", "tc_ingress", "tc_egress"] {
        assert_eq!(row(if r == "xdp" { "xdp" } else { "tc" }, r)[5], "yes", "{r}");
    }
    let this_machine = !Path::new("/sys/kernel/tracing/kprobe_events").exists();
    let kprobes: Vec<_> = rows.iter().filter(|r| r.len() > 5 && r[3] == "kprobe").collect();
    let fentries: Vec<_> = rows.iter().filter(|r| r.len() > 5 && r[3] == "fentry").collect();
    assert!(kprobes.len() >= 10 && fentries.len() >= 10, "{table}");
    for r in kprobes.iter().chain(&fentries) {
        let text = r[5..].join(" ");
        // Every entry says yes or why not, naming something.
        assert!(text.starts_with("yes (") || text.starts_with("no: "), "{text}");
    }
    if this_machine {
        for r in &kprobes {
            let text = r[5..].join(" ");
            assert!(
                text.contains(
                    "kprobes are not built into this kernel (no kprobe_events in tracefs; \
                               CONFIG_KPROBES/CONFIG_KPROBE_EVENTS off)"
                ),
                "{text}"
            );
        }
        for r in &fentries {
            let text = r[5..].join(" ");
            // Functions without BTF are explained by that; the others by the refused load.
            assert!(text.contains("EPERM") || text.contains("has no BTF in this kernel"), "{text}");
        }
        let tcp_v4_rcv = row("fentry", "tcp_v4_rcv")[5..].join(" ");
        assert!(
            tcp_v4_rcv.starts_with(
                "no: fentry on tcp_v4_rcv: the kernel refused to load a tracing program \
                 (EPERM: lockdown, or BPF trampolines unavailable"
            ),
            "{tcp_v4_rcv}"
        );
    }
    assert!(table.trim_end().ends_with("probes available on this kernel"), "{table}");

    // A preset lists only its probes; a wrong one is a usage error naming the known ones.
    let stack = netlat_capture(&["--list-probes", "--layers", "stack"]);
    let stack = String::from_utf8_lossy(&stack.stdout);
    assert!(stack.contains("net_dev_xmit") && !stack.contains("sock_send_length"), "{stack}");
    assert!(!stack.contains("tcp_sendmsg_locked"), "{stack}");
    assert!(!stack.contains("kprobe") && !stack.contains("sched_switch"), "{stack}");
    let bad = netlat_capture(&["--list-probes", "--layers", "tcp"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown preset \"tcp\" (known: wire, stack, socket, all)"), "{err}");
}

/// A real capture records the preset and its probes in the run metadata, and
/// warns about each unavailable one. Runs in a namespace of its own (a
/// process in a new network namespace), so it touches no shared interface.
#[test]
fn issue4_layers_are_recorded_in_run_metadata() {
    if !kernel_test("issue4_layers_are_recorded_in_run_metadata") {
        return;
    }
    let mut ns = Command::new("unshare").args(["-n", "sleep", "60"]).spawn().expect("unshare (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let iface = format!("pid:{}/lo", ns.id());
    let out = netlat_capture(&[
        "-i",
        &iface,
        "-w",
        dir.path().to_str().unwrap(),
        "--duration",
        "0.5",
        "--hooks",
        "tc_ingress",
        "--sync-port",
        "0",
        "--layers",
        "all",
        "-q",
    ]);
    ns.kill().unwrap();
    ns.wait().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let meta = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".meta.json"))
        .expect("a metadata file");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    assert_eq!(meta["config"]["layers"], "all");
    let probes = meta["probes"].as_array().unwrap();
    assert_eq!(probes.len(), conf::probes::Catalog::builtin().probes.len());
    let unavailable: Vec<_> = probes.iter().filter(|p| p["available"] == false).collect();
    for p in &unavailable {
        let line = format!(
            "netlat-capture: warning: probe {} ({} {}) unavailable: {}; continuing without it",
            p["name"].as_str().unwrap(),
            p["kind"].as_str().unwrap(),
            p["target"].as_str().unwrap(),
            p["detail"].as_str().unwrap()
        );
        assert!(err.contains(&line), "{line} not in\n{err}");
    }
    let xdp = probes.iter().find(|p| p["name"] == "xdp").unwrap();
    assert_eq!(xdp["available"], true);
}
