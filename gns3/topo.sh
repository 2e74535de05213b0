#!/usr/bin/env bash
# scripts/seed_topo.sh's interface (up|down|cut|heal PREFIX ...), the topology built from
# gns3/seed004.gns3 and its sidecar by gns3/run-topology.py: the same namespaces, interface
# names, switch ports, addresses and settings. A drop-in for scripts that take a topology
# script (scripts/demo.sh with TOPO=gns3).
exec python3 "$(dirname "${BASH_SOURCE[0]}")/run-topology.py" "$@"
