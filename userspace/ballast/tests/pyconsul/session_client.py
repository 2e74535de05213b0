"""py-consul's session and lock calls, unchanged, against a ballast cluster.

usage: session_client.py HOST PORT
Exits non-zero with a message on the first difference from Consul's behaviour.
"""
import base64
import sys
import threading
import time

import consul
from consul.exceptions import ConsulException

host, port = sys.argv[1], int(sys.argv[2])
c = consul.Consul(host=host, port=port)
node = c.agent.self()["Config"]["NodeName"]

# Create: the agent's node by default, serfHealth, release, 15 s lock delay unless told.
sid = c.session.create(name="svc-lock", ttl=10, lock_delay=3)
_, s = c.session.info(sid)
assert s["ID"] == sid and s["Name"] == "svc-lock" and s["Node"] == node, s
assert s["TTL"] == "10s" and s["Behavior"] == "release" and s["LockDelay"] == 3_000_000_000, s
assert s["NodeChecks"] == ["serfHealth"], s
idx, listed = c.session.list()
assert sid in [x["ID"] for x in listed] and int(idx) >= s["CreateIndex"], (idx, listed)
_, on_node = c.session.node(node)
assert sid in [x["ID"] for x in on_node], on_node
assert c.session.renew(sid)["ID"] == sid
other = c.session.create(name="other", lock_delay=0)

# Locks: one holder; the lock index counts acquisitions; release only by the holder.
assert c.kv.put("svc/leader", "me", acquire=sid) is True
assert c.kv.put("svc/leader", "other", acquire=other) is False
_, e = c.kv.get("svc/leader")
assert e["Session"] == sid and e["LockIndex"] == 1 and e["Value"] == b"me", e
assert c.kv.put("svc/leader", "x", release=other) is False
assert c.kv.put("svc/leader", "bye", release=sid) is True
_, e = c.kv.get("svc/leader")
assert not e.get("Session") and e["Value"] == b"bye", e
assert c.kv.put("svc/leader", "other", acquire=other) is True
assert c.kv.get("svc/leader")[1]["LockIndex"] == 2

# A destroyed holder's key is released; with no lock delay it is free at once.
assert c.session.destroy(other) is True
assert not c.kv.get("svc/leader")[1].get("Session")
assert c.session.info(other)[1] is None
assert other not in [x["ID"] for x in c.session.list()[1]]
assert c.kv.put("svc/leader", "me", acquire=sid) is True

# The lock delay: after the holder (3 s delay) is destroyed, no one acquires the key until
# the delay is over.
third = c.session.create(name="third", lock_delay=0)
assert c.session.destroy(sid) is True
destroyed = time.monotonic()
assert c.kv.put("svc/leader", "third", acquire=third) is False, "acquired inside the lock delay"
while not c.kv.put("svc/leader", "third", acquire=third):
    assert time.monotonic() - destroyed < 30, "the lock delay never ended"
    time.sleep(0.2)
assert c.kv.get("svc/leader")[1]["Session"] == third

# behavior=delete: the held key goes with the session.
d = c.session.create(behavior="delete", lock_delay=0)
assert c.kv.put("svc/ephemeral", "x", acquire=d) is True
c.session.destroy(d)
assert c.kv.get("svc/ephemeral")[1] is None

# A session that does not exist cannot acquire; renewing it is a 404.
try:
    c.kv.put("svc/x", "x", acquire="00000000-0000-0000-0000-00000000dead")
    raise AssertionError("acquire with an unknown session succeeded")
except ConsulException:
    pass
try:
    c.session.renew(sid)
    raise AssertionError("renew of a destroyed session succeeded")
except consul.NotFound:
    pass

# A blocking list returns when the sessions change.
idx, _ = c.session.list()
result = {}


def watch():
    result["r"] = c.session.list(index=idx, wait="30s")


t = threading.Thread(target=watch)
t.start()
time.sleep(0.3)
late = c.session.create(name="late")
t.join(60)
assert not t.is_alive(), "blocking list never returned"
new_idx, listed = result["r"]
assert int(new_idx) > int(idx) and late in [x["ID"] for x in listed], result

# Transactions: lock, check-session, unlock.
r = c.txn.put([
    {"KV": {"Verb": "lock", "Key": "svc/txn", "Value": base64.b64encode(b"t").decode(), "Session": late}},
    {"KV": {"Verb": "check-session", "Key": "svc/txn", "Session": late}},
])
assert len(r["Results"]) == 2, r
assert c.kv.get("svc/txn")[1]["Session"] == late
c.txn.put([{"KV": {"Verb": "unlock", "Key": "svc/txn", "Session": late}}])
assert not c.kv.get("svc/txn")[1].get("Session")
for x in (late, third):
    c.session.destroy(x)
print("all checks passed")
