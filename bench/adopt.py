"""How long inspectord takes to adopt a large ironic-inspector database.

ironic-inspector 12.5.0's own ``ironic-inspector-dbsync upgrade`` makes its
schema; the rows are then written straight into its tables, as its
``store_data = database`` leaves them (finished introspections, each with
processed and unprocessed data from the IPA fixture with every collector,
and a lookup attribute each), with a few rules.  Then ``inspectord-dbsync
adopt`` runs on the database and is timed, as an operator would run it.

    .venv/bin/python -m bench.adopt --records 1000 [--database-url URL]

Without ``--database-url``, a SQLite file in a temporary directory;
``--database-url mariadb`` starts a MariaDB server (:mod:`devenv.databases`).
"""

import argparse
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

import sqlalchemy as sa

from devenv.ironic_inspector import IronicInspectorProcess

FIXTURE = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ipa-payload-all-collectors.json"


def fill(url, records, rules=10):
    """Write ``records`` finished introspections with their data into ironic-inspector's tables."""
    raw = json.loads(FIXTURE.read_text())
    processed = {k: v for k, v in raw.items() if k != "logs"}
    raw_text, processed_text = json.dumps(raw), json.dumps(processed)
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=["nodes", "attributes", "introspection_data", "rules", "rule_conditions",
                               "rule_actions"])
    t = meta.tables
    start = datetime.datetime(2025, 1, 1)
    with engine.begin() as conn:
        for i in range(0, records, 100):
            batch = [str(uuidlib.uuid4()) for _ in range(min(100, records - i))]
            conn.execute(t["nodes"].insert(), [
                {"uuid": u, "state": "finished", "version_id": "", "manage_boot": True,
                 "started_at": start + datetime.timedelta(minutes=i + n),
                 "finished_at": start + datetime.timedelta(minutes=i + n, seconds=90)}
                for n, u in enumerate(batch)
            ])
            conn.execute(t["attributes"].insert(), [
                {"uuid": str(uuidlib.uuid4()), "node_uuid": u, "name": "bmc_address", "value": "10.0.{}.{}".format(
                    (i + n) // 250, (i + n) % 250)}
                for n, u in enumerate(batch)
            ])
            conn.execute(t["introspection_data"].insert(), [
                {"uuid": u, "processed": p, "data": text}
                for u in batch for p, text in ((True, processed_text), (False, raw_text))
            ])
        for r in range(rules):
            rule = str(uuidlib.uuid4())
            conn.execute(t["rules"].insert().values(uuid=rule, created_at=start, description="rule %d" % r,
                                                    disabled=False, scope=None))
            conn.execute(t["rule_conditions"].insert().values(
                rule=rule, op="ge", multiple="any", invert=False, field="memory_mb", params=json.dumps({"value": r})))
            conn.execute(t["rule_actions"].insert().values(
                rule=rule, action="set-attribute", params=json.dumps({"path": "/extra/r%d" % r, "value": True})))
    engine.dispose()
    return len(raw_text) + len(processed_text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-adopt-"))
    url = args.database_url or "sqlite:///{}/inspector.sqlite".format(workdir)
    if url == "mariadb":
        from devenv import databases

        _server, url = databases.fresh_database("mariadb")
    upstream = IronicInspectorProcess(workdir / "ironic-inspector", "http://127.0.0.1:9", database_url=url)
    upstream.dbsync()
    size = fill(url, args.records)
    config = workdir / "inspectord.conf"
    config.write_text(
        "[DEFAULT]\nauth_strategy = noauth\n[ironic]\nauth_type = none\nendpoint_override = http://127.0.0.1:9\n"
        "[database]\nconnection = {}\n".format(url)
    )
    dbsync = os.path.join(os.path.dirname(sys.executable), "inspectord-dbsync")
    began = time.monotonic()
    result = subprocess.run([dbsync, "--config-file", str(config), "adopt"], capture_output=True, text=True)
    elapsed = time.monotonic() - began
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    print(result.stdout.strip())
    print("{} introspection records ({} data records, {:.1f} KiB of data per node): inspectord-dbsync adopt took "
          "{:.2f} s (process start included) on {}".format(
              args.records, 2 * args.records, size / 1024, elapsed, url.split(":", 1)[0]))


if __name__ == "__main__":
    main()
