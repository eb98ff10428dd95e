use super::*;

fn parse(text: &str) -> Result<Catalog, ConfError> {
    Catalog::parse(Path::new("conf/probes.yaml"), text)
}

const ONE: &str = "probes:\n  - name: net_dev_queue\n    layer: qdisc\n    dir: send\n    kind: tracepoint\n    \
                   target: net:net_dev_queue\n    arg: {skb: 0}\n    presets: [stack, socket, all]\n";

#[test]
fn builtin_catalog_is_valid_and_complete() {
    let c = Catalog::builtin();
    let tps: Vec<&str> = c.probes.iter().filter(|p| p.kind == Kind::Tracepoint).map(|p| p.target.as_str()).collect();
    for tp in [
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
    ] {
        assert!(tps.contains(&tp), "{tp} missing from the catalog");
    }
    // The seed's kprobe set, each as fentry and kprobe.
    for f in ["sock_sendmsg", "tcp_v4_send_check", "ip_finish_output2", "__dev_queue_xmit", "sock_recvmsg"]
        .into_iter()
        .chain([
            "tcp_v4_rcv",
            "ip_local_deliver",
            "netif_receive_skb",
            "__netif_receive_skb_core",
            "virtqueue_add_outbuf",
        ])
    {
        for k in [Kind::Fentry, Kind::Kprobe] {
            assert!(c.probes.iter().any(|p| p.kind == k && p.target == f), "{k} {f} missing");
        }
    }
}

#[test]
fn presets_nest_as_documented() {
    let c = Catalog::builtin();
    let names = |p: Preset| c.preset(p).map(|p| p.name.as_str()).collect::<Vec<_>>();
    assert_eq!(names(Preset::Wire), ["xdp", "tc_ingress", "tc_egress"]);
    let stack = c.preset(Preset::Stack).collect::<Vec<_>>();
    assert!(stack
        .iter()
        .all(|p| matches!(p.layer, Layer::Wire | Layer::Ip | Layer::Qdisc | Layer::Driver | Layer::Tcp)));
    assert!(stack.iter().all(|p| matches!(p.kind, Kind::Xdp | Kind::Tc | Kind::Tracepoint)));
    let socket = c.preset(Preset::Socket).collect::<Vec<_>>();
    assert!(socket.iter().any(|p| p.layer == Layer::Socket));
    assert!(socket.iter().all(|p| !matches!(p.layer, Layer::Sched | Layer::Drop)));
    assert!(socket.iter().all(|p| matches!(p.kind, Kind::Xdp | Kind::Tc | Kind::Tracepoint)));
    assert_eq!(c.preset(Preset::All).count(), c.probes.len());
    assert!(names(Preset::Stack).len() < names(Preset::Socket).len());
}

#[test]
fn one_probe_parses() {
    let c = parse(ONE).unwrap();
    let p = &c.probes[0];
    assert_eq!((p.layer, p.dir, p.kind, p.arg), (Layer::Qdisc, Dir::Send, Kind::Tracepoint, Some(Arg::Skb(0))));
    assert_eq!(p.tracepoint(), Some(("net", "net_dev_queue")));
    assert!(p.in_preset(Preset::Stack) && !p.in_preset(Preset::Wire));
}

#[test]
fn malformed_yaml_names_the_file() {
    let e = parse("probes: [ {name: x\n").unwrap_err().to_string();
    assert!(e.starts_with("conf/probes.yaml: "), "{e}");
    let e = Catalog::load(Path::new("/nonexistent/probes.yaml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/probes.yaml: cannot read"), "{e}");
}

#[test]
fn unknown_values_and_fields_are_named() {
    let e = parse(&ONE.replace("layer: qdisc", "layer: l7")).unwrap_err().to_string();
    assert!(e.starts_with("conf/probes.yaml: ") && e.contains("unknown variant `l7`") && e.contains("socket"), "{e}");
    let e = parse(&ONE.replace("kind: tracepoint", "kind: uprobe")).unwrap_err().to_string();
    assert!(e.contains("unknown variant `uprobe`") && e.contains("kretprobe"), "{e}");
    let e = parse(&ONE.replace("[stack, socket, all]", "[stack, everything]")).unwrap_err().to_string();
    assert!(e.contains("unknown variant `everything`") && e.contains("wire"), "{e}");
    let e = parse(&ONE.replace("dir: send", "dir: up")).unwrap_err().to_string();
    assert!(e.contains("unknown variant `up`"), "{e}");
    let e = parse(&ONE.replace("{skb: 0}", "{packet: 0}")).unwrap_err().to_string();
    assert!(e.contains("unknown field `packet`") && e.contains("skb"), "{e}");
    let e = parse(&ONE.replace("{skb: 0}", "{skb: 0, sock: 1}")).unwrap_err().to_string();
    assert!(e.contains("exactly one of skb"), "{e}");
    let e = parse(&format!("{ONE}    colour: red\n")).unwrap_err().to_string();
    assert!(e.contains("unknown field `colour`") && e.contains("line"), "{e}");
    let e = parse(&ONE.replace("    dir: send\n", "")).unwrap_err().to_string();
    assert!(e.contains("missing field `dir`"), "{e}");
}

#[test]
fn inconsistent_probes_name_the_field() {
    let e = parse(&ONE.replace("[stack, socket, all]", "[stack, all]")).unwrap_err().to_string();
    assert_eq!(
        e,
        "conf/probes.yaml: field `probes[0].presets`: net_dev_queue: presets nest (wire ⊂ stack ⊂ socket ⊂ all): \
         in stack but not in socket"
    );
    let e = parse(&ONE.replace("[stack, socket, all]", "[]")).unwrap_err().to_string();
    assert!(e.contains("`probes[0].presets`"), "{e}");
    let e = parse(&ONE.replace("target: net:net_dev_queue", "target: net_dev_queue")).unwrap_err().to_string();
    assert!(e.contains("`probes[0].target`") && e.contains("SYSTEM:EVENT"), "{e}");
    let e = parse(&ONE.replace("name: net_dev_queue", "name: Net-Dev")).unwrap_err().to_string();
    assert!(e.contains("`probes[0].name`"), "{e}");
    let twice = format!("{ONE}{}", ONE.trim_start_matches("probes:\n"));
    let e = parse(&twice).unwrap_err().to_string();
    assert!(e.contains("`probes[1].name`") && e.contains("used twice"), "{e}");
    let e = parse(&ONE.replace("layer: qdisc", "layer: wire")).unwrap_err().to_string();
    assert!(e.contains("`probes[0].layer`"), "{e}");
    let kp = ONE.replace("kind: tracepoint", "kind: kprobe").replace("net:net_dev_queue", "dev_queue_xmit");
    parse(&kp).unwrap();
    let e = parse(&kp.replace("{skb: 0}", "{skb: 6}")).unwrap_err().to_string();
    assert!(e.contains("`probes[0].arg`") && e.contains("skb:6"), "{e}");
}

#[test]
fn presets_parse_from_the_command_line() {
    assert_eq!("socket".parse::<Preset>().unwrap(), Preset::Socket);
    assert_eq!("tcp".parse::<Preset>().unwrap_err(), "unknown preset \"tcp\" (known: wire, stack, socket, all)");
}
