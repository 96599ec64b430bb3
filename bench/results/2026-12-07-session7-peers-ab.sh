#!/bin/bash
# A/B: one-node cluster before peer interest (b870041), after, and the single node.
# usage: $0 OUT   (binaries in $D: switchboard-before, switchboard-after, nats-server)
set -u
D=${D:-/tmp/ab}
K=bench-session7-access-key-0123456789
OUT=$1
PASSES=${PASSES:-6}
cs() { echo "Endpoint=http://127.0.0.1:$1;AccessKey=$K;Version=1.0;"; }
PIDS=()
stop() { for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; }
trap stop EXIT
for p in 14622 14623; do rm -rf $D/js$p && mkdir -p $D/js$p; $D/nats-server -a 127.0.0.1 -p $p -js -sd $D/js$p >/dev/null 2>&1 & PIDS+=($!); done
sleep 1
start() { # bin port id [nats port]
	local extra=(); [ -n "${4:-}" ] && extra=(--set cluster.nats_url=nats://127.0.0.1:$4)
	$1 serve --addr 127.0.0.1:$2 --data-dir "$(mktemp -d)" --access-key $K --set signalr.addr= --set server.node_id=$3 "${extra[@]}" >/dev/null 2>&1 & PIDS+=($!)
	for _ in $(seq 50); do curl -sf http://127.0.0.1:$2/api/health >/dev/null && return; sleep 0.2; done
}
start $D/switchboard-before 18920 before 14622
start $D/switchboard-after 18921 after 14623
start $D/switchboard-after 18922 single
sleep 7 # three heartbeat periods: the after node knows it is alone
for pass in $(seq $PASSES); do
	for x in "before 18920" "after 18921" "single 18922"; do
		set -- $x
		echo "=== pass $pass $1 $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT
		$D/switchboard-after bench fanout --connection-string "$(cs $2)" --subscribers 100 --publishers 1 --messages 3000 --runs 3 2>/dev/null | tee -a $OUT
	done
done
for port in 18920 18921; do
	echo "=== unpublished on $port: $(curl -s http://127.0.0.1:$port/metrics | grep '^switchboard_cluster_messages_unpublished_total' | tr '\n' ' ')" | tee -a $OUT
done
