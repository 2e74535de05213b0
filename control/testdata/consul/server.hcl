# A Consul server as the deployment guide writes it (HCL).
datacenter = "dc1"
data_dir = "/opt/consul"
node_name = "consul-server-1"
server = true
bootstrap_expect = 3
client_addr = "0.0.0.0"
bind_addr = "10.0.0.10"
advertise_addr = "10.0.0.10"
encrypt = "qDOPBEr+/oUVeOFQOnVypxwDaHzLrD+lvjo5vCEBbZ0="
retry_join = ["10.0.0.11", "10.0.0.12"]
retry_interval = "15s"
ui_config {
  enabled = true
}
log_level = "INFO"
log_file = "/var/log/consul/"
log_rotate_duration = "24h"
log_rotate_max_files = 7
disable_update_check = true
leave_on_terminate = true
performance {
  raft_multiplier = 1
}
autopilot {
  cleanup_dead_servers = true
  last_contact_threshold = "200ms"
  max_trailing_logs = 250
}
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
