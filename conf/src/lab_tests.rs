use super::*;

fn parse(text: &str) -> Result<Topology, ConfError> {
    Topology::parse(Path::new("conf/lab/t.yaml"), text)
}

fn invalid(text: &str) -> (String, String) {
    match parse(text) {
        Err(ConfError::Invalid { path, field, message }) => {
            assert_eq!(path, Path::new("conf/lab/t.yaml"));
            (field, message)
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

const VETH: &str =
    "name: t\nkind: veth\nhosts:\n  - {name: a, addr: 198.18.0.1/24}\n  - {name: b, addr: 198.18.0.2/24}\n";

#[test]
fn shipped_topologies_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
    let mut kinds = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let t = Topology::load(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.file_stem().unwrap().to_str().unwrap(), t.name, "file named after its topology");
        kinds.push(t.kind);
    }
    for k in [Kind::Veth, Kind::Bridge, Kind::Overlay, Kind::Relay] {
        assert!(kinds.contains(&k), "{k} missing from conf/lab");
    }
}

#[test]
fn veth_parses() {
    let t = parse(VETH).unwrap();
    assert_eq!(t.kind, Kind::Veth);
    assert_eq!(t.hosts[1].addr, Cidr { addr: Ipv4Addr::new(198, 18, 0, 2), prefix: 24 });
    assert_eq!(t.endpoints().len(), 2);
}

#[test]
fn address_outside_lab_block_is_refused() {
    let (f, m) = invalid(&VETH.replace("198.18.0.2/24", "10.0.0.2/24"));
    assert_eq!(f, "hosts[1].addr");
    assert!(m.contains("outside the lab block 198.18.0.0/15"), "{m}");
}

#[test]
fn malformed_address_names_field() {
    let e = parse(&VETH.replace("198.18.0.2/24", "198.18.0.2")).unwrap_err().to_string();
    assert!(e.starts_with("conf/lab/t.yaml: hosts[1]") && e.contains("line 5"), "{e}");
    assert!(e.contains("ADDR/PREFIX"), "{e}");
}

#[test]
fn unknown_field_is_refused() {
    let e = parse(&format!("{VETH}colour: red\n")).unwrap_err().to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
}

#[test]
fn counts_and_names_are_checked() {
    let one = "name: t\nkind: veth\nhosts:\n  - {name: a, addr: 198.18.0.1/24}\n";
    assert_eq!(invalid(one).0, "hosts");
    assert_eq!(invalid(&VETH.replace("name: b", "name: a")).0, "hosts[1].name");
    assert_eq!(invalid(&VETH.replace("name: b", "name: waytoolong")).0, "hosts[1].name");
    assert_eq!(invalid(&VETH.replace("0.2/24", "0.1/24")).0, "hosts[1].addr");
    assert_eq!(invalid(&VETH.replace("0.2/24", "1.2/24")).0, "hosts");
    assert_eq!(invalid(&format!("{VETH}router: {{name: r, delay_us: 1}}\n")).0, "router");
}

#[test]
fn relay_needs_gateways_and_separate_subnets() {
    let good = "name: t\nkind: relay\nrouter: {name: r, delay_us: 200}\nhosts:\n  \
- {name: a, addr: 198.18.1.1/24, gateway: 198.18.1.254}\n  - {name: b, addr: 198.18.2.1/24, gateway: 198.18.2.254}\n";
    assert_eq!(parse(good).unwrap().router.unwrap().delay_us, 200);
    assert_eq!(invalid(&good.replace(", gateway: 198.18.2.254", "")).0, "hosts[1].gateway");
    assert_eq!(invalid(&good.replace("gateway: 198.18.2.254", "gateway: 198.18.3.254")).0, "hosts[1].gateway");
    assert_eq!(invalid(&good.replace("198.18.2.", "198.18.1.").replace("1.1/24", "1.3/24")).0, "hosts[1].addr");
    assert_eq!(invalid(&good.replace("200", "2000000")).0, "router.delay_us");
    assert_eq!(invalid(&good.replace("router: {name: r, delay_us: 200}\n", "")).0, "router");
}

#[test]
fn overlay_is_checked() {
    let good = "name: t\nkind: overlay\nvxlan: {vni: 7}\nvms:\n  \
- {name: vm1, underlay: 198.18.1.1/24, containers: [{name: c1, addr: 198.18.0.1/24}]}\n  \
- {name: vm2, underlay: 198.18.1.2/24, containers: [{name: c2, addr: 198.18.0.2/24}]}\n";
    let t = parse(good).unwrap();
    assert_eq!(t.vxlan.as_ref().unwrap().port, 4789);
    assert_eq!(t.endpoints().iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["c1", "c2"]);
    assert_eq!(invalid(&good.replace("vni: 7", "vni: 0")).0, "vxlan.vni");
    assert_eq!(invalid(&good.replace("198.18.0.2/24", "198.18.1.9/24")).0, "vms[1].containers");
    assert_eq!(invalid(&good.replace("vm2", "vm1")).0, "vms[1].name");
    assert_eq!(invalid(&good.replace("c2", "c1")).0, "vms[1].containers[0].name");
    let bridged = good.replace("underlay: 198.18.1.1/24,", "underlay: 198.18.1.1/24, bridge_addr: 198.18.0.101/24,");
    assert_eq!(parse(&bridged).unwrap().vms[0].bridge_addr.unwrap().addr.to_string(), "198.18.0.101");
    assert_eq!(invalid(&bridged.replace("198.18.0.101/24", "198.18.1.101/24")).0, "vms[0].bridge_addr");
}

#[test]
fn bridge_needs_its_bridge() {
    let good = "name: t\nkind: bridge\nbridge: {name: host}\nhosts:\n  \
- {name: c1, addr: 198.18.0.1/24}\n  - {name: c2, addr: 198.18.0.2/24}\n";
    assert_eq!(parse(good).unwrap().bridge.unwrap().name, "host");
    assert_eq!(invalid(&good.replace("bridge: {name: host}\n", "")).0, "bridge");
    assert_eq!(invalid(&good.replace("name: host", "name: c1")).0, "bridge.name");
}
