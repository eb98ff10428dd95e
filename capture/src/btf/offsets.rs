//! [`KernelOffsets`] from the running kernel's BTF.

use capture_common::offsets::{KernelOffsets, NONE};

use super::{Btf, BtfError};

/// One field of [`KernelOffsets`] and where it lives in the kernel.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Name of the [`KernelOffsets`] field.
    pub name: &'static str,
    /// BTF path: struct, then members (`sock.__sk_common.skc_daddr`).
    pub path: &'static str,
    /// Whether a kernel without it is refused (else it is [`NONE`]).
    pub required: bool,
    /// Stores the offset.
    pub set: fn(&mut KernelOffsets, u16),
    /// Reads it back.
    pub get: fn(&KernelOffsets) -> u16,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.name, self.path)
    }
}

macro_rules! specs {
    ($($field:ident: $path:literal $(, $req:ident)?;)*) => {
        /// Every offset of [`KernelOffsets`] with its BTF path, in struct order
        /// (`skb_header_size`, a size, is set by [`resolve`]).
        pub const SPECS: &[Spec] = &[$(Spec {
            name: stringify!($field),
            path: $path,
            required: specs!(@req $($req)?),
            set: |o, v| o.$field = v,
            get: |o| o.$field,
        }),*];
    };
    (@req optional) => { false };
    (@req) => { true };
}

specs! {
    skb_head: "sk_buff.head";
    skb_data: "sk_buff.data";
    skb_len: "sk_buff.len";
    skb_data_len: "sk_buff.data_len";
    skb_network_header: "sk_buff.network_header";
    skb_transport_header: "sk_buff.transport_header";
    skb_mac_header: "sk_buff.mac_header";
    skb_protocol: "sk_buff.protocol";
    skb_dev: "sk_buff.dev";
    skb_sk: "sk_buff.sk";
    skb_tstamp: "sk_buff.tstamp", optional;
    dev_ifindex: "net_device.ifindex";
    dev_nd_net: "net_device.nd_net.net", optional;
    sk_family: "sock.__sk_common.skc_family";
    sk_num: "sock.__sk_common.skc_num";
    sk_dport: "sock.__sk_common.skc_dport";
    sk_rcv_saddr: "sock.__sk_common.skc_rcv_saddr";
    sk_daddr: "sock.__sk_common.skc_daddr";
    sk_v6_rcv_saddr: "sock.__sk_common.skc_v6_rcv_saddr", optional;
    sk_v6_daddr: "sock.__sk_common.skc_v6_daddr", optional;
    sk_net: "sock.__sk_common.skc_net.net", optional;
    net_ns_inum: "net.ns.inum";
    tcp_write_seq: "tcp_sock.write_seq";
    tcp_snd_una: "tcp_sock.snd_una";
    tcp_snd_nxt: "tcp_sock.snd_nxt";
    tcp_copied_seq: "tcp_sock.copied_seq";
    tcp_rcv_nxt: "tcp_sock.rcv_nxt";
    skb_cb: "sk_buff.cb";
    sk_protocol: "sock.sk_protocol";
    task_pid: "task_struct.pid";
    sk_cgroup: "sock.sk_cgrp_data.cgroup", optional;
    cgroup_kn: "cgroup.kn", optional;
    kn_id: "kernfs_node.id", optional;
    sk_receive_queue: "sock.sk_receive_queue", optional;
    udp_reader_queue: "udp_sock.reader_queue", optional;
    socket_sk: "socket.sk";
}

/// Reads every offset from `btf`. A missing required field is an error naming
/// it; a missing optional one becomes [`NONE`].
pub fn resolve(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let mut out = KernelOffsets::default();
    for spec in SPECS {
        let offset = match btf.field(spec.path) {
            Ok(f) => u16::try_from(f.offset)
                .ok()
                .filter(|o| *o != NONE)
                .ok_or(BtfError::TooFar { path: spec.path.to_owned(), offset: f.offset })?,
            Err(BtfError::NoField { .. } | BtfError::NoStruct(_)) if !spec.required => NONE,
            Err(e) => return Err(e),
        };
        (spec.set)(&mut out, offset);
    }
    // The programs read the header offsets with one width; record it.
    out.skb_header_size = btf.field("sk_buff.network_header")?.size as u16;
    Ok(out)
}

/// The tracepoint programs' configuration for namespace `netns`, recording `hooks`
/// (bit `1 << hook id`).
pub fn stack_config(btf: &Btf, netns: u32, hooks: u32) -> Result<capture_common::offsets::StackConfig, BtfError> {
    let o = resolve(btf)?;
    for (v, path) in [(o.dev_nd_net, "net_device.nd_net"), (o.sk_net, "sock.__sk_common.skc_net")] {
        if v == NONE {
            let (strukt, field) = path.split_once('.').expect("a dot");
            return Err(BtfError::NoField { strukt: strukt.into(), field: field.into(), path: path.into() });
        }
    }
    // SKB_CONSUMED is a free, not a drop; kernels before 6.0 have no such value (nothing
    // to skip then).
    let drop_consumed = btf
        .enum_values("skb_drop_reason")
        .and_then(|v| v.into_iter().find(|(n, _)| n == "SKB_CONSUMED").map(|(_, v)| v))
        .unwrap_or(u32::MAX);
    Ok(capture_common::offsets::StackConfig {
        netns,
        hooks,
        drop_consumed,
        skb_head: o.skb_head,
        skb_data: o.skb_data,
        skb_len: o.skb_len,
        skb_mac_header: o.skb_mac_header,
        skb_network_header: o.skb_network_header,
        skb_dev: o.skb_dev,
        skb_sk: o.skb_sk,
        skb_cb: o.skb_cb,
        dev_ifindex: o.dev_ifindex,
        dev_nd_net: o.dev_nd_net,
        net_inum: o.net_ns_inum,
        sk_family: o.sk_family,
        sk_protocol: o.sk_protocol,
        sk_num: o.sk_num,
        sk_dport: o.sk_dport,
        sk_rcv_saddr: o.sk_rcv_saddr,
        sk_daddr: o.sk_daddr,
        sk_v6_rcv_saddr: o.sk_v6_rcv_saddr,
        sk_v6_daddr: o.sk_v6_daddr,
        sk_net: o.sk_net,
        tcp_write_seq: o.tcp_write_seq,
        tcp_copied_seq: o.tcp_copied_seq,
        tcp_rcv_nxt: o.tcp_rcv_nxt,
        task_pid: o.task_pid,
        sk_cgroup: o.sk_cgroup,
        cgroup_kn: o.cgroup_kn,
        kn_id: o.kn_id,
        sk_receive_queue: o.sk_receive_queue,
        udp_reader_queue: o.udp_reader_queue,
        socket_sk: o.socket_sk,
    })
}

/// Names of `enum skb_drop_reason`, by value (empty on kernels without it).
pub fn drop_reasons(btf: &Btf) -> std::collections::HashMap<u32, String> {
    btf.enum_values("skb_drop_reason")
        .unwrap_or_default()
        .into_iter()
        .map(|(n, v)| (v, n.strip_prefix("SKB_DROP_REASON_").unwrap_or(&n).to_owned()))
        .collect()
}
