"""netlat-analyze's latency query in DuckDB: the baseline of the analyzer benchmark.

Usage: python3 scripts/duckdb_latency.py [--temp-dir DIR] [--timings] [--check] FILES_OR_DIRS...
       python3 scripts/duckdb_latency.py --check   (only the nearest-rank check)

Computes what `netlat-analyze --same-clock --format json` reports, on the same files, and
prints it as JSON with the same field names: per ordered pair of observation points
(host, netns, ifname, hook) of consecutive observations of one pkt_id (by ts_ns, then point)
the count, min, nearest-rank p50/p90/p99 and max latency; ids seen more than once at one
point are ambiguous and left out; ids seen at one point only are counted per point.

Nearest rank: DuckDB's quantile_disc with a DECIMAL fraction returns the value at 1-based
rank ceil(q*n), computed in integers (`--check` verifies it first). DuckDB runs with its defaults
(threads = number of CPUs, memory limit 80 % of RAM).
"""

import json
import os
import sys
import time

import duckdb

EVENTS_SUFFIX = ".events.parquet"


def find_files(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, names in os.walk(p):
                dirs.sort()
                out += [os.path.join(root, n) for n in sorted(names) if n.endswith(EVENTS_SUFFIX) and not n.startswith(".")]
        else:
            out.append(p)
    return out


def check_nearest_rank(con):
    """quantile_disc(v, 0.9) must be the value at rank ceil(0.9 n) for every n."""
    rows = con.execute(
        """
        SELECT n, quantile_disc(v, 0.5), quantile_disc(v, 0.9), quantile_disc(v, 0.99)
        FROM (SELECT n, unnest(range(1, n + 1)) AS v FROM range(1, 301) t(n)) GROUP BY n
        """
    ).fetchall()
    for n, p50, p90, p99 in rows:
        want = tuple((n * p + 99) // 100 for p in (50, 90, 99))
        if (p50, p90, p99) != want:
            sys.exit(f"duckdb_latency: quantile_disc is not nearest-rank at n={n}: {(p50, p90, p99)} != {want}")


def main(argv):
    temp_dir, timings, check, paths = None, False, False, []
    args = iter(argv)
    for a in args:
        if a == "--temp-dir":
            temp_dir = next(args)
        elif a == "--timings":
            timings = True
        elif a == "--check":
            check = True
        else:
            paths.append(a)
    con = duckdb.connect()
    # The progress bar would print to standard output after 2 s, into the JSON.
    con.execute("SET enable_progress_bar = false")
    if check:
        check_nearest_rank(con)
        if not paths:
            return
    files = find_files(paths)
    if not files:
        sys.exit("duckdb_latency: no *.events.parquet files")
    if temp_dir:
        con.execute(f"SET temp_directory = '{temp_dir}'")
    steps = []
    t0 = time.monotonic()

    def step(name, sql, params=None):
        t = time.monotonic()
        r = con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()
        steps.append((name, time.monotonic() - t))
        return r

    src = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"

    # 1. Observation points, numbered in the analyzer's order (host, ifname, hook, netns):
    #    the number breaks ties between equal timestamps.
    points = step(
        "points",
        f"""
        CREATE TEMP TABLE points AS
        SELECT host, netns, ifname, hook,
               (row_number() OVER (ORDER BY host, ifname, hook, netns) - 1)::UINTEGER AS point
        FROM (SELECT DISTINCT host, netns, ifname, hook FROM {src}
              WHERE ts_ns IS NOT NULL AND pkt_id IS NOT NULL)
        """,
    )
    points = con.execute("SELECT point, host, netns, ifname, hook FROM points ORDER BY point").fetchall()
    # 2. The slim table: (pkt_id, ts_ns, point), once.
    step(
        "slim",
        f"""
        CREATE TEMP TABLE slim AS
        SELECT e.pkt_id, e.ts_ns, p.point
        FROM {src} e JOIN points p USING (host, netns, ifname, hook)
        WHERE e.ts_ns IS NOT NULL AND e.pkt_id IS NOT NULL
        """,
    )
    # 3. Per id: rows (1: unmatched). Ids seen twice at one point (ambiguous) from a second
    #    aggregate on (id, point): faster in DuckDB than count(DISTINCT point) per id
    #    (10M events: 9 s against 12.5 s for the two, on the loaded bench machine).
    step(
        "ids",
        "CREATE TEMP TABLE ids AS SELECT pkt_id, count(*) AS n, any_value(point) AS point FROM slim GROUP BY pkt_id",
    )
    step(
        "ambiguous",
        "CREATE TEMP TABLE amb AS SELECT DISTINCT pkt_id FROM slim GROUP BY pkt_id, point HAVING count(*) > 1",
    )
    totals = step("totals", "SELECT (SELECT count(*) FROM amb), count(*), coalesce(sum(n), 0) FROM ids")[0]
    unmatched = step("unmatched", "SELECT point, count(*) FROM ids WHERE n = 1 GROUP BY point")
    # 4. Consecutive observations of one id (a window over all ids, ambiguous ones dropped
    #    after it), aggregated per ordered pair of points.
    pairs = step(
        "pairs",
        """
        SELECT "from", "to", count(*), min(lat),
               quantile_disc(lat, 0.50), quantile_disc(lat, 0.90), quantile_disc(lat, 0.99), max(lat)
        FROM (
            SELECT pkt_id,
                   point AS "from",
                   lead(point) OVER w AS "to",
                   lead(ts_ns) OVER w - ts_ns AS lat
            FROM slim
            WINDOW w AS (PARTITION BY pkt_id ORDER BY ts_ns, point)
        )
        WHERE "to" IS NOT NULL AND pkt_id NOT IN (SELECT pkt_id FROM amb)
        GROUP BY ALL
        """,
    )
    total = time.monotonic() - t0

    labels = {p: f"{h}:{i}:{k}" for p, h, _, i, k in points}
    uses = {}
    for lab in labels.values():
        uses[lab] = uses.get(lab, 0) + 1
    for p, h, ns, i, k in points:
        if uses[labels[p]] > 1:
            labels[p] = f"{labels[p]}[netns {ns}]"
    out_pairs = [
        {
            "from": labels[a],
            "to": labels[b],
            "count": n,
            "min_ns": mn,
            "p50_ns": p50,
            "p90_ns": p90,
            "p99_ns": p99,
            "max_ns": mx,
        }
        for a, b, n, mn, p50, p90, p99, mx in pairs
    ]
    out_pairs.sort(key=lambda r: (-r["count"], r["from"], r["to"]))
    out_unmatched = sorted(({"point": labels[p], "ids": n} for p, n in unmatched), key=lambda r: (-r["ids"], r["point"]))
    doc = {
        "pairs": out_pairs,
        "unmatched": out_unmatched,
        "ambiguous": totals[0],
        "events": int(totals[2]),
        "ids": totals[1],
        "percentile_method": "nearest-rank",
        "files": {"used": files},
    }
    if timings:
        doc["timings_s"] = {name: round(s, 3) for name, s in steps} | {"total": round(total, 3)}
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
