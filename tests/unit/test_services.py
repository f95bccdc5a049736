"""Which services are forwarded: only what the host-side helper confirmed is the user's own."""

from portal_tasks.services import from_cluster, from_jupyter, not_forwarded

CLUSTER = {"env": "a", "env_key": "a", "dashboard_port": 23401, "healthy": True, "dashboard_ok": True,
           "dashboard_unowned": None}
JUPYTER = {"env": "a", "env_key": "a", "port": 23402, "socket": None, "token": "t", "healthy": True, "problem": None}


def test_confirmed_services_are_forwarded():
    dash, lab = from_cluster(CLUSTER), from_jupyter(JUPYTER)
    assert dash is not None and dash.remote == "127.0.0.1:23401" and dash.path == "/status"
    assert lab is not None and lab.remote == "127.0.0.1:23402" and lab.path == "/lab?token=t"
    assert not_forwarded([CLUSTER], [JUPYTER]) == []


def test_a_port_held_by_someone_else_is_a_note_not_a_forward():
    why = "dashboard port 23401 is held by another user, bob (uid 1001), not by your scheduler"
    cluster = dict(CLUSTER, dashboard_ok=False, dashboard_unowned=why)
    taken = "port 23402 is held by another user, bob (uid 1001), not by your JupyterLab."
    lab = dict(JUPYTER, healthy=False, problem=taken)
    assert from_cluster(cluster) is None and from_jupyter(lab) is None
    assert not_forwarded([cluster], [lab]) == [f"dashboard of env a not forwarded: {why}.",
                                               f"JupyterLab of env a not forwarded: {taken}"]
    assert from_cluster(dict(CLUSTER, dashboard_ok=None)) is None  # an older helper's answer: not confirmed
