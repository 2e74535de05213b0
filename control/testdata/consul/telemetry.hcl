# A server that exports metrics (Consul's telemetry docs: Prometheus and statsd).
datacenter = "dc1"
data_dir = "/opt/consul"
server = true
bootstrap_expect = 1
bind_addr = "127.0.0.1"
encrypt = "qDOPBEr+/oUVeOFQOnVypxwDaHzLrD+lvjo5vCEBbZ0="
telemetry {
  prometheus_retention_time = "60s"
  disable_hostname = true
  statsd_address = "127.0.0.1:8125"
}
ports {
  grpc = 8502
  dns = -1
}
