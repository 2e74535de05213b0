# A server with TLS on everything (Consul's "secure the agents" tutorial shape).
datacenter = "dc1"
data_dir = "/opt/consul"
server = true
bootstrap_expect = 3
bind_addr = "10.0.0.10"
encrypt = "qDOPBEr+/oUVeOFQOnVypxwDaHzLrD+lvjo5vCEBbZ0="
retry_join = ["10.0.0.11", "10.0.0.12"]
tls {
  defaults {
    ca_file = "/etc/consul.d/consul-agent-ca.pem"
    cert_file = "/etc/consul.d/dc1-server-consul-0.pem"
    key_file = "/etc/consul.d/dc1-server-consul-0-key.pem"
    verify_incoming = true
    verify_outgoing = true
  }
  internal_rpc {
    verify_server_hostname = true
  }
}
auto_encrypt {
  allow_tls = true
}
ports {
  https = 8501
}
connect {
  enabled = true
}
watches {
  type = "keyprefix"
  prefix = "lb/"
  args = ["/usr/local/bin/reload.sh"]
}
