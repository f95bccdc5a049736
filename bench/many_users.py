"""(5) N users running `up` at the same time: all succeed, no port collisions, every dashboard loads."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.context import Bench
from bench.stats import Row, percentile
from bench.up_cold import by_hand, cluster_spec
from portal_tasks.testing.assertions import user_ports
from portal_tasks.testing.server import TestUser
from portal_tasks.testing.sockets import Listener, parse_ss

URL = re.compile(r"dashboard-\S+: (http://localhost:\d+/status)")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _listeners(b: Bench) -> list[Listener]:
    assert b.server.admin_run is not None
    return parse_ss(b.server.admin_run(["ss", "-Htlnpe"], timeout=30).stdout)


def baseline(b: Bench, users: list[TestUser], spec: tuple[int, int, int]) -> list[float]:
    """Seconds until each user's by-hand cluster (bench/up_cold.py) sees its workers, all users at once."""
    with ThreadPoolExecutor(len(users)) as pool:
        return list(pool.map(lambda u: by_hand(b, *spec, user=u), users))  # raises when any failed


def run(b: Bench, workers: int = 1) -> list[Row]:
    users = b.extra_users()
    for user in users:
        b.reset(user)

    def up(user: TestUser) -> tuple[TestUser, float, str]:
        seconds, res = b.up(user, "--workers", str(workers), timeout=600)
        return user, seconds, res.stdout

    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(up, users))  # raises when any `up` failed
    times = [s for _, s, _ in results]
    spec = cluster_spec(b, users[0])
    dashboards = [m.group(1) for _, _, out in results for m in [URL.search(out)] if m]
    loaded = sum(1 for url in dashboards if _status(url) == 200)
    blocks: dict[int, dict[str, Any]] = {}
    for user in users:
        blocks[user.uid] = user_ports(b.portal(user, "ports", "--host", b.host, "--json"))["block"]
    uids = set(blocks)
    mine = [s for s in _listeners(b) if s.uid in uids]
    # a collision: a user listening inside another user's block, or two users sharing a port
    foreign = [s for s in mine for uid, blk in blocks.items() if uid != s.uid and blk["start"] <= s.port <= blk["end"]]
    shared = len(mine) - len({(s.addr, s.port) for s in mine})
    overlapping = sum(1 for a in blocks for c in blocks if a < c and
                      blocks[a]["start"] <= blocks[c]["end"] and blocks[c]["start"] <= blocks[a]["end"])
    collisions = len(foreign) + shared + overlapping
    n = len(users)
    seed = n * (1 + 1 + 1)  # per user one env, one client (IPython), one LocalCluster for it
    for user in users:
        b.reset(user)
    hands = baseline(b, users, spec)
    label = f"{n} users, `up --workers {workers}` at once"
    hand_what = (f"the same {n} clusters ({spec[0]} worker{'s' * (spec[0] != 1)} × {spec[1]} threads) "
                 "started by hand at once, "
                 "as in (2), one ssh each")
    return [
        Row("5", f"{label}: p50 of `up` time", percentile(times, 50), "s", f"{hand_what}: p50",
            percentile(hands, 50)),
        Row("5", f"{label}: p95 of `up` time", percentile(times, 95), "s", f"{hand_what}: p95",
            percentile(hands, 95), target=1.3),
        Row("5", f"{label}: succeeded / dashboards loading (HTTP 200)", float(min(len(results), loaded)), "of "
            + str(n), note=f"{len(results)} succeeded, {loaded} of {len(dashboards)} dashboards loaded",
            target=float(n), higher_is_better=True),
        Row("5", f"{label}: port collisions", float(collisions), "", target=0.0),
        Row("5", f"{label}: listening ports of all of them", float(len(mine)), "ports",
            "seed scheme n_envs + n_clients + n_clusters (1 + 1 + 1 per user)", float(seed)),
    ]
