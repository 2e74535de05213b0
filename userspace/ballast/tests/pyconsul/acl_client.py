"""py-consul's ACL (policies, tokens, roles) and transaction calls, unchanged, against a ballast cluster with ACLs on
(default deny) and a management token.

usage: acl_client.py HOST PORT MANAGEMENT_TOKEN
Exits non-zero with a message on the first difference from Consul's behaviour.
"""
import base64
import json
import sys
import urllib.error
import urllib.request

import consul
from consul.exceptions import BadRequest

host, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = consul.Consul(host=host, port=port, token=root)


def b64(s):
    return base64.b64encode(s.encode()).decode()


# Policies. py-consul sends {"name": ..., "rules": ...} (lower case: Go's JSON decoding
# ignores case) and the rules as JSON.
p = c.acl.policy.create(name="app-rw", rules={"key_prefix": {"app/": {"policy": "write"}}})
assert p["Name"] == "app-rw", p
pid = p["ID"]
assert c.acl.policy.read(pid)["Name"] == "app-rw"
assert "app-rw" in [x["Name"] for x in c.acl.policy.list()]
p = c.acl.policy.update(pid, "app-rw", description="app keys",
                        rules={"key_prefix": {"app/": {"policy": "write"}}, "key": {"db/a": {"policy": "read"}}})
assert p["Description"] == "app keys", p
# By name (GET /v1/acl/policy/name/NAME), with the HTTP client py-consul has no call for.
req = urllib.request.Request(f"http://{host}:{port}/v1/acl/policy/name/app-rw", headers={"X-Consul-Token": root})
with urllib.request.urlopen(req, timeout=10) as r:
    assert json.load(r)["ID"] == pid
# A second policy with the same name is refused.
try:
    c.acl.policy.create(name="app-rw")
    raise AssertionError("a duplicate policy name was accepted")
except BadRequest:
    pass

# Tokens: created with a policy by name, used, updated, cloned, read, deleted.
t = c.acl.token.create(description="app", policies_name=["app-rw"])
acc, secret = t["AccessorID"], t["SecretID"]
assert [x["Name"] for x in t["Policies"]] == ["app-rw"], t
app = consul.Consul(host=host, port=port, token=secret)
assert app.kv.put("app/x", "1") is True
try:
    app.kv.put("db/x", "1")
    raise AssertionError("a write outside the token's rules was allowed")
except consul.ACLPermissionDenied:
    pass
assert c.acl.token.read(acc)["Description"] == "app"
assert c.acl.token.read_self(token=secret)["AccessorID"] == acc

clone = c.acl.token.clone(acc, description="app copy")
assert clone["AccessorID"] != acc and clone["SecretID"] != secret, clone
assert clone["Description"] == "app copy", clone
assert [x["Name"] for x in clone["Policies"]] == ["app-rw"], clone
copy = consul.Consul(host=host, port=port, token=clone["SecretID"])
assert copy.kv.put("app/from-clone", "1") is True

# An update replaces description and policies; the secret stays.
t2 = c.acl.token.update(acc, description="no rights")
assert t2["AccessorID"] == acc and t2["SecretID"] == secret, t2
assert t2["Description"] == "no rights" and not t2["Policies"], t2
try:
    app.kv.put("app/y", "1")
    raise AssertionError("the updated token (no policies) could still write")
except consul.ACLPermissionDenied:
    pass
t3 = c.acl.token.update(acc, policies_id=[pid], description="back")
assert [x["ID"] for x in t3["Policies"]] == [pid], t3
assert app.kv.put("app/y", "1") is True
# The clone was not touched by the updates.
assert c.acl.token.read(clone["AccessorID"])["Description"] == "app copy"

assert c.acl.token.delete(clone["AccessorID"]) is True
# py-consul turns the 404 into None.
assert c.acl.token.read(clone["AccessorID"]) is None, "a deleted token can still be read"
assert acc in [x["AccessorID"] for x in c.acl.token.list()]

# Transactions: set and check-index come back with the value blanked, get and get-or-empty
# with it; lower-case keys decode too. py-consul's txn.put sends no token (its other calls
# do), which a default-deny cluster refuses as Consul does; the same body with the token:
def txn(ops):
    req = urllib.request.Request(f"http://{host}:{port}/v1/txn", method="PUT", data=json.dumps(ops).encode(),
                                 headers={"X-Consul-Token": root})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


try:
    c.txn.put([{"KV": {"Verb": "get", "Key": "app/x"}}])
    raise AssertionError("py-consul's token-less txn was allowed under default deny")
except consul.ACLPermissionDenied:
    pass
code, r = txn([
    {"KV": {"Verb": "set", "Key": "app/t", "Value": b64("v1"), "Flags": 7}},
    {"KV": {"Verb": "get-or-empty", "Key": "app/none"}},
    {"kv": {"verb": "get", "key": "app/t"}},
])
assert code == 200, (code, r)
res = [x["KV"] for x in r["Results"]]
assert res[0]["Key"] == "app/t" and res[0]["Value"] is None and res[0]["Flags"] == 7, res
assert res[1]["Key"] == "app/none" and res[1]["Value"] is None and res[1]["ModifyIndex"] == 0, res
assert base64.b64decode(res[2]["Value"]) == b"v1", res
idx = res[2]["ModifyIndex"]
code, r = txn([{"KV": {"Verb": "check-index", "Key": "app/t", "Index": idx}},
               {"KV": {"Verb": "cas", "Key": "app/t", "Value": b64("v2"), "Index": idx}}])
assert code == 200 and all(x["KV"]["Value"] is None for x in r["Results"]), (code, r)
assert c.kv.get("app/t")[1]["Value"] == b"v2"
# Over the operation limit: 413, as Consul.
code, r = txn([{"KV": {"Verb": "get-or-empty", "Key": f"app/{i}"}} for i in range(129)])
assert code == 413, (code, r)

# An endpoint ballast does not serve is a 404 whatever the method (not 405).
for method in ("GET", "PUT", "POST", "DELETE"):
    req = urllib.request.Request(f"http://{host}:{port}/v1/no/such/endpoint", method=method,
                                 headers={"X-Consul-Token": root}, data=b"{}" if method != "GET" else None)
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError(f"{method} of an unknown endpoint succeeded")
    except urllib.error.HTTPError as e:
        assert e.code == 404, (method, e.code)

# Roles: a named set of policies; a token linked to a role has its policies.
role = c.acl.role.create("app-role", description="app writers", policies_name=["app-rw"])
rid = role["ID"]
assert [x["Name"] for x in role["Policies"]] == ["app-rw"], role
assert c.acl.role.read(rid)["Name"] == "app-role"
assert c.acl.role.read_by_name("app-role")["ID"] == rid
assert rid in [r["ID"] for r in c.acl.role.list()]
rt = c.acl.token.create(description="via role", roles_name=["app-role"])
assert [x["Name"] for x in rt["Roles"]] == ["app-role"] and not rt["Policies"], rt
via_role = consul.Consul(host=host, port=port, token=rt["SecretID"])
assert via_role.kv.put("app/via-role", "1") is True
# The role loses its policy: the token loses the right.
role = c.acl.role.update(rid, "app-role", description="none")
assert not role["Policies"], role
try:
    via_role.kv.put("app/via-role", "2")
    raise AssertionError("a token kept a right its role lost")
except consul.ACLPermissionDenied:
    pass
assert c.acl.role.delete(rid) is True
assert c.acl.role.read(rid) is None

assert c.acl.policy.delete(pid) is True
print("all checks passed")
