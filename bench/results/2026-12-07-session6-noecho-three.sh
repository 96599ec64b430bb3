#!/bin/bash
set -u
D=/tmp/ne
K=bench-session6-access-key-0123456789
BIN=$1; OUT=$2
cs() { echo "Endpoint=http://127.0.0.1:$1;AccessKey=$K;Version=1.0;"; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; wait' EXIT
rm -rf $D/js3 && mkdir -p $D/js3; $D/nats-server -a 127.0.0.1 -p 14622 -js -sd $D/js3 >/dev/null 2>&1 & PIDS+=($!)
sleep 1
for i in 0 1 2; do
	$BIN serve --addr 127.0.0.1:1870$i --data-dir "$(mktemp -d)" --access-key $K --set signalr.addr= --set server.node_id=c$i --set cluster.nats_url=nats://127.0.0.1:14622 >/dev/null 2>&1 & PIDS+=($!)
done
for i in 0 1 2; do for _ in $(seq 50); do curl -sf http://127.0.0.1:1870$i/api/health >/dev/null && break; sleep 0.2; done; done
sleep 3
for subs in 100 5000; do
	echo "=== $subs $(date -u +%H:%M:%S)" | tee -a $OUT
	$BIN bench fanout --connection-string "$(cs 18700)" --node http://127.0.0.1:18701 --node http://127.0.0.1:18702 --subscribers $subs --publishers 3 --messages $([ $subs = 100 ] && echo 3000 || echo 60) --runs 3 2>/dev/null | tee -a $OUT
done
for i in 0 1 2; do curl -s http://127.0.0.1:1870$i/metrics | grep -E '^switchboard_cluster_errors_total' | tee -a $OUT; done
