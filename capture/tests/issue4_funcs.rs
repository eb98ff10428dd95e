//! Kernel tests of issue 4, part 2: probe points given as data (fentry/fexit, kprobe/
//! kretprobe, any tracepoint) load where the kernel allows, and where it does not the
//! capture says which probe and why, and carries on. What they record is checked against
//! netlat's own hooks in `scripts/tests/layers.rs`.

mod common;
use common::kernel_test;

use capture::{
    funcs::{FuncProbe, Plan},
    loader::Scope,
    netns::Netns,
};
use capture_common::abi::CaptureConfig;
use conf::probes::{Arg, Kind};

fn probe(name: &str, kind: Kind, target: &str, arg: Arg, slot: usize) -> FuncProbe {
    FuncProbe { name: name.into(), kind, target: target.into(), arg, dir: conf::probes::Dir::Recv, slot }
}

/// Every kind, loaded for real: the tracepoint attaches, and the kprobe and fentry
/// programs either attach or fail with the kernel's reason, never in the verifier (this
/// machine has no kprobes and refuses fentry with EPERM: kprobe programs still load, so
/// the verifier's answer on them is checked here; fentry's is not, where EPERM comes first).
#[test]
fn issue4_probes_given_as_data_load_or_say_why_not() {
    if !kernel_test("issue4_probes_given_as_data_load_or_say_why_not") {
        return;
    }
    let plan = Plan {
        probes: vec![
            probe("t_queue", Kind::Tracepoint, "net:net_dev_queue", Arg::Skb(0), 0),
            probe("k_rcv", Kind::Kprobe, "ip_rcv", Arg::Skb(0), 1),
            probe("kr_rcv", Kind::Kretprobe, "ip_rcv", Arg::Skb(0), 2),
            probe("f_rcv", Kind::Fentry, "ip_rcv", Arg::Skb(0), 3),
            probe("fx_rcv", Kind::Fexit, "ip_rcv", Arg::Skb(0), 4),
            probe("f_core", Kind::Fentry, "__netif_receive_skb_core", Arg::Pskb(0), 5),
            probe("t_gro", Kind::Tracepoint, "net:napi_gro_receive_entry", Arg::Skb(0), 6),
            // Socket arguments: the socket layer's code in the same programs.
            FuncProbe {
                dir: conf::probes::Dir::Send,
                ..probe("k_send", Kind::Kprobe, "sock_sendmsg", Arg::Socket(0), 7)
            },
            probe("kr_recv", Kind::Kretprobe, "sock_recvmsg", Arg::Socket(0), 8),
            probe("t_space", Kind::Tracepoint, "tcp:tcp_rcv_space_adjust", Arg::Sock(0), 9),
        ],
        left_out: Vec::new(),
    };
    let scope = Scope::load(Netns::current().unwrap(), &CaptureConfig::default(), 1 << 20, 0, &plan, true)
        .expect("loads with probes given as data");
    for w in &scope.warnings {
        eprintln!("{w}");
    }
    let warned = |name: &str| scope.warnings.iter().find(|w| w.contains(&format!("probe {name} ")));
    assert!(warned("t_queue").is_none() && warned("t_gro").is_none(), "{:?}", scope.warnings);
    assert!(warned("t_space").is_none(), "{:?}", scope.warnings);
    for name in ["k_rcv", "kr_rcv", "f_rcv", "fx_rcv", "f_core", "k_send", "kr_recv"] {
        let Some(w) = warned(name) else { continue };
        assert!(w.contains("could not be attached: ") && w.ends_with("continuing without it"), "{w}");
        // Loaded (verified), or refused before verification (EPERM: this machine's fentry).
        let refused = w.contains("Operation not permitted (os error 1)");
        assert!(w.contains(": attaching netlat_") || refused, "{w}");
    }
    if let Some(w) = warned("k_rcv") {
        assert!(w.contains("attaching netlat_kprobe to ip_rcv: "), "the kprobe program passed the verifier: {w}");
    }
    if let Some(w) = warned("kr_rcv") {
        // Both programs loaded before the first attachment.
        assert!(w.contains("attaching netlat_kprobe to ip_rcv: "), "the kretprobe program passed the verifier: {w}");
        assert!(scope.program_fd("netlat_kretprobe").is_some(), "netlat_kretprobe loaded");
    }
    assert!(scope.program_fd("netlat_func_tp0").is_some() && scope.program_fd("netlat_func_tp6").is_some());
    assert!(scope.program_fd("netlat_func_tp9").is_some(), "a socket tracepoint given as data loads");
    // Socket probes need the call tracepoints, where their bytes are known.
    assert!(scope.program_fd("netlat_sock_send").is_some() && scope.program_fd("netlat_sock_recv").is_some());
    // Each program reads its packet argument where the kernel puts it.
    let kprobes = std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists();
    if !kprobes {
        let w = warned("k_rcv").expect("no kprobes here: k_rcv cannot attach");
        assert!(w.contains("ip_rcv"), "{w}");
    }
    use capture::schema::PointLookup;
    let points = capture::loader::Points::of(std::slice::from_ref(&scope), plan.hook_names());
    assert_eq!(points.hook_name(usize::from(capture_common::abi::hook::FUNC) + 5), "f_core");
}

/// `--list-probes` says of an available probe given as data that it would not be
/// recorded, and why (here: a socket argument with no direction).
#[test]
fn issue4_list_probes_says_which_available_probes_are_not_recorded() {
    if !kernel_test("issue4_list_probes_says_which_available_probes_are_not_recorded") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("probes.yaml");
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/probes.yaml")).unwrap();
    let extra = r#"
  - {name: my_recv, layer: socket, dir: none, kind: tracepoint, target: "sock:sock_recv_length", arg: {sock: 0}, presets: [all]}
  - {name: my_queue, layer: qdisc, dir: send, kind: tracepoint, target: "net:net_dev_queue", arg: {skb: 0}, presets: [all]}
"#;
    std::fs::write(&file, builtin + extra).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netlat-capture"))
        .args(["--list-probes", "--probes", file.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}{}", String::from_utf8_lossy(&out.stderr));
    let line = |name: &str| table.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap().to_owned();
    let recv = line("my_recv");
    assert!(
        recv.contains("yes (tp_btf; not recorded: its argument is a socket (sock:0) but its dir is none: "),
        "{recv}"
    );
    assert!(recv.ends_with("so it needs `dir: send` or `dir: recv`)"), "{recv}");
    assert!(line("my_queue").ends_with("yes (tp_btf)"), "{}", line("my_queue"));
}
