#!/usr/bin/env bash
# The chaos scenario (tests/chaos/chaos.sh), short: 45 s of etcd member
# kills, compactions, expiring leases, instance churn, backend kills,
# freezes, silent drops and GOAWAYs under picking clients, then every
# invariant checked.  `make chaos` runs the long one (CHAOS_SECONDS=300).
# CHAOS_SHORT_SECONDS overrides the 45 s.
CHAOS_SECONDS=${CHAOS_SHORT_SECONDS:-45}
export CHAOS_SECONDS
exec bash "$(dirname "$0")/../chaos/chaos.sh"
