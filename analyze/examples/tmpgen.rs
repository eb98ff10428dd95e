use polars::prelude::*;
fn main() {
    let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let dir = std::env::args().nth(2).unwrap();
    for (h, off, hook) in [("h1", 0i64, "tc_egress"), ("h2", 1, "xdp")] {
        let ts: Vec<i64> = (0..n as i64).map(|i| i * 1000 + off * (5000 + (i * 7919) % 100_000)).collect();
        let id: Vec<u64> = (0..n as u64).map(|i| (i * 0x9E3779B97F4A7C15) | 1).collect();
        let mut df = df!(
            "ts_ns" => ts, "host" => vec![h; n], "netns" => vec![1u64; n],
            "ifname" => vec!["eth0"; n], "hook" => vec![hook; n], "pkt_id" => id,
            "cpu" => vec![1u16; n],
        ).unwrap();
        let kv = KeyValueMetadata::from_static(vec![("netlat.schema_version".into(), "1".into())]);
        let f = std::fs::File::create(format!("{dir}/{h}-x-00001.events.parquet")).unwrap();
        ParquetWriter::new(f).with_key_value_metadata(Some(kv)).finish(&mut df).unwrap();
    }
}
