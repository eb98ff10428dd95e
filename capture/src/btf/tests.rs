use super::*;

/// Raw BTF with: 1 int (4 bytes), 2 long (8 bytes), 3 struct inner { long x; int y; },
/// 4 anonymous union { int b; int c; }, 5 struct outer { int a; union {b, c}; struct
/// inner in; int flags:3; }, 6 typedef outer_t = outer, 7 func `f`, 8 typedef btf_trace_tp.
fn blob() -> Vec<u8> {
    let strings = b"\0int\0long\0inner\0x\0y\0b\0c\0outer\0a\0in\0flags\0outer_t\0f\0btf_trace_tp\0".to_vec();
    let s = |name: &str| {
        let pat = format!("\0{name}\0");
        strings.windows(pat.len()).position(|w| w == pat.as_bytes()).unwrap() as u32 + 1
    };
    let mut t: Vec<u32> = Vec::new();
    let info = |kind: u32, vlen: u32, flag: bool| (kind << 24) | vlen | if flag { 1 << 31 } else { 0 };
    t.extend([s("int"), info(KIND_INT, 0, false), 4, 32]);
    t.extend([s("long"), info(KIND_INT, 0, false), 8, 64]);
    t.extend([s("inner"), info(KIND_STRUCT, 2, false), 16]);
    t.extend([s("x"), 2, 0, s("y"), 1, 64]);
    t.extend([0, info(KIND_UNION, 2, false), 4]);
    t.extend([s("b"), 1, 0, s("c"), 1, 0]);
    t.extend([s("outer"), info(KIND_STRUCT, 4, true), 32]);
    t.extend([s("a"), 1, 0, 0, 4, 32, s("in"), 3, 64, s("flags"), 1, (3 << 24) | 192]);
    t.extend([s("outer_t"), info(KIND_TYPEDEF, 0, false), 5]);
    t.extend([s("f"), info(KIND_FUNC, 0, false), 0]);
    t.extend([s("btf_trace_tp"), info(KIND_TYPEDEF, 0, false), 1]);
    let types: Vec<u8> = t.iter().flat_map(|w| w.to_le_bytes()).collect();
    let mut b = vec![0x9f, 0xeb, 1, 0];
    for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
        b.extend(w.to_le_bytes());
    }
    b.extend(types);
    b.extend(strings);
    b
}

#[test]
fn members_through_anonymous_unions_and_nested_structs() {
    let btf = Btf::parse(&blob()).unwrap();
    assert_eq!(btf.member("outer", "a").unwrap(), Field { offset: 0, size: 4 });
    assert_eq!(btf.member("outer", "c").unwrap(), Field { offset: 4, size: 4 });
    assert_eq!(btf.member("outer", "in").unwrap(), Field { offset: 8, size: 16 });
    assert_eq!(btf.member("outer", "in.y").unwrap(), Field { offset: 16, size: 4 });
    assert!(matches!(btf.member("outer", "flags"), Err(BtfError::Bitfield { .. })));
    assert!(matches!(btf.member("outer", "nope"), Err(BtfError::NoMember { .. })));
    assert!(matches!(btf.member("nope", "a"), Err(BtfError::NoStruct(_))));
    assert!(btf.has_func("f") && !btf.has_func("g"));
    assert!(btf.has_btf_tracepoint("tp") && !btf.has_btf_tracepoint("f"));
    assert!(Btf::parse(&blob()[..30]).is_err());
    assert!(Btf::parse(b"not btf at all, not at all").is_err());
}

/// `pahole -C TY` (Debian package dwarves) on the kernel's BTF: offset and size of a member,
/// as pahole prints them (`/*   OFF   SIZE */`), anonymous unions included.
fn pahole(ty: &str, member: &str) -> Option<(u32, u32)> {
    let out = std::process::Command::new("pahole").args(["-C", ty, VMLINUX]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| {
        let decl = l.split("/*").next().unwrap_or("");
        decl.trim_end().trim_end_matches(';').split_whitespace().last().map(|w| w.trim_start_matches('*'))
            == Some(member)
    })?;
    let nums: Vec<u32> =
        line.split("/*").nth(1)?.split_whitespace().filter_map(|w| w.trim_end_matches(':').parse().ok()).collect();
    Some((nums[0], nums[1]))
}

#[test]
fn issue4_offsets_match_this_kernel() {
    if !Path::new(VMLINUX).exists() || std::process::Command::new("pahole").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI needs {VMLINUX} and pahole (scripts/bootstrap)");
        eprintln!("skipped: no kernel BTF or no pahole (Debian package dwarves)");
        return;
    }
    let btf = Btf::kernel().unwrap();
    let fields = [
        ("sk_buff", "len"),
        ("sk_buff", "data_len"),
        ("sk_buff", "head"),
        ("sk_buff", "data"),
        ("sk_buff", "network_header"),
        ("sk_buff", "transport_header"),
        ("sk_buff", "mac_header"),
        ("sk_buff", "dev"),
        ("sk_buff", "sk"),
        ("sk_buff", "protocol"),
        ("net_device", "ifindex"),
        ("net_device", "nd_net"),
        ("sock", "__sk_common"),
        ("sock_common", "skc_family"),
        ("sock_common", "skc_num"),
        ("sock_common", "skc_dport"),
        ("sock_common", "skc_rcv_saddr"),
        ("sock_common", "skc_daddr"),
        ("sock_common", "skc_v6_daddr"),
        ("sock_common", "skc_v6_rcv_saddr"),
        ("sock_common", "skc_net"),
        ("net", "ns"),
        ("ns_common", "inum"),
        ("tcp_sock", "write_seq"),
        ("tcp_sock", "snd_una"),
        ("tcp_sock", "copied_seq"),
        ("tcp_sock", "rcv_nxt"),
    ];
    for (ty, m) in fields {
        let ours = btf.member(ty, m).unwrap_or_else(|e| panic!("{e}"));
        let theirs = pahole(ty, m).unwrap_or_else(|| panic!("pahole has no {ty}.{m}"));
        assert_eq!((ours.offset, ours.size), theirs, "{ty}.{m}");
    }
    // A path through a named member adds up.
    let a = btf.member("sock", "__sk_common").unwrap().offset + btf.member("sock_common", "skc_daddr").unwrap().offset;
    assert_eq!(btf.member("sock", "__sk_common.skc_daddr").unwrap().offset, a);
    for f in ["tcp_v4_rcv", "ip_finish_output2", "__dev_queue_xmit", "tcp_sendmsg"] {
        assert!(btf.has_func(f), "{f}");
    }
    for tp in ["net_dev_xmit", "netif_receive_skb", "net_dev_queue", "kfree_skb", "sock_send_length"] {
        assert!(btf.has_btf_tracepoint(tp), "{tp}");
    }
}
