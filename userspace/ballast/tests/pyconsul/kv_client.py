"""A real Consul client (py-consul, unchanged) against a ballast agent.

usage: kv_client.py HOST PORT
Exits non-zero with a message on the first difference from Consul's behaviour.
"""
import sys
import threading

import consul

host, port = sys.argv[1], int(sys.argv[2])
c = consul.Consul(host=host, port=port)

assert c.kv.put("py/a", "1") is True
assert c.kv.put("py/b", "2", flags=42) is True
index, data = c.kv.get("py/a")
assert data["Value"] == b"1", data
assert data["Key"] == "py/a"
assert int(index) >= data["ModifyIndex"], (index, data)

# recurse
index, items = c.kv.get("py/", recurse=True)
assert [i["Key"] for i in items] == ["py/a", "py/b"], items
assert items[1]["Flags"] == 42
# keys with a separator
_, keys = c.kv.get("", keys=True, separator="/")
assert "py/" in keys, keys

# cas: create-only, stale index, right index
assert c.kv.put("py/a", "x", cas=0) is False
_, cur = c.kv.get("py/a")
assert c.kv.put("py/a", "x", cas=cur["ModifyIndex"] + 1000) is False
assert c.kv.put("py/a", "x", cas=cur["ModifyIndex"]) is True
assert c.kv.get("py/a")[1]["Value"] == b"x"

# missing key
index, missing = c.kv.get("py/none")
assert missing is None

# blocking get: returns when the key changes, with the new value
_, cur = c.kv.get("py/a")
result = {}

def watch():
    result["r"] = c.kv.get("py/a", index=cur["ModifyIndex"], wait="30s")

t = threading.Thread(target=watch)
t.start()
c.kv.put("py/unrelated", "u")
c.kv.put("py/a", "woken")
t.join(60)
assert not t.is_alive(), "blocking get never returned"
idx, data = result["r"]
assert data["Value"] == b"woken", data
assert int(idx) == data["ModifyIndex"], (idx, data)

# delete with cas, then recurse delete
_, cur = c.kv.get("py/b")
assert c.kv.delete("py/b", cas=cur["ModifyIndex"] + 1) is False
assert c.kv.delete("py/b", cas=cur["ModifyIndex"]) is True
assert c.kv.get("py/b")[1] is None
assert c.kv.delete("py/", recurse=True) is True
assert c.kv.get("py/", recurse=True)[1] is None

# consistency modes and status
assert c.kv.get("py/none", consistency="consistent")[1] is None
assert c.kv.get("py/none", consistency="stale")[1] is None
leader = c.status.leader()
assert leader.endswith(":%d" % port) or ":" in leader, leader
peers = c.status.peers()
assert len(peers) >= 1, peers

# transactions
r = c.txn.put([
    {"KV": {"Verb": "set", "Key": "py/t1", "Value": "MQ=="}},
    {"KV": {"Verb": "set", "Key": "py/t2", "Value": "Mg=="}},
])
assert len(r["Results"]) == 2, r
print("py-consul: all checks passed")
