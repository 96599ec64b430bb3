#!/bin/bash
# A/B: one-node cluster with echo (main) vs without (noecho), and the single node.
set -u
D=/tmp/ne
K=bench-session6-access-key-0123456789
OUT=$1
cs() { echo "Endpoint=http://127.0.0.1:$1;AccessKey=$K;Version=1.0;"; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; wait' EXIT
for p in 14522 14523; do rm -rf $D/js$p && mkdir -p $D/js$p; $D/nats-server -a 127.0.0.1 -p $p -js -sd $D/js$p >/dev/null 2>&1 & PIDS+=($!); done
sleep 1
start() { # bin port id [cluster]
	local extra=(); [ -n "${4:-}" ] && extra=(--set cluster.nats_url=nats://127.0.0.1:$4)
	$1 serve --addr 127.0.0.1:$2 --data-dir "$(mktemp -d)" --access-key $K --set signalr.addr= --set server.node_id=$3 "${extra[@]}" >/dev/null 2>&1 & PIDS+=($!)
	for _ in $(seq 50); do curl -sf http://127.0.0.1:$2/api/health >/dev/null && return; sleep 0.2; done
}
start $D/switchboard-main 18910 echo 14522
start $D/switchboard-noecho 18911 noecho 14523
start $D/switchboard-noecho 18912 single
for pass in 1 2 3; do
	for x in "echo 18910" "noecho 18911" "single 18912"; do
		set -- $x
		echo "=== pass $pass $1 $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT
		$D/switchboard-noecho bench fanout --connection-string "$(cs $2)" --subscribers 100 --publishers 1 --messages 3000 --runs 3 2>/dev/null | tee -a $OUT
	done
done
