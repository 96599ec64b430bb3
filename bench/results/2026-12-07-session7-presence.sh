#!/bin/bash
# Presence cost: `switchboard bench presence` against a server with presence off, with member
# notifications (presence_notify) and with group presence events to a loopback handler.
# usage: $0 OUT   (run from the repository root after make build; the handler answers every event 204)
set -u
K=presence-bench-access-key-0123456789
D=${D:-/tmp/pb}
OUT=$1
python3 bench/results/2026-12-07-session7-presence-handler.py 18951 & HP=$!
trap 'kill $HP 2>/dev/null' EXIT
printf 'hubs:\n  bench:\n    presence_notify: ["presence*"]\n' > $D/on.yaml
for pass in 1 2; do
	for mode in off notify gpevents; do
		cfg=(); [ $mode = notify ] && cfg=(--config $D/on.yaml); [ $mode = gpevents ] && cfg=(--config bench/results/2026-12-07-session7-presence-gp.yaml)
		bin/switchboard serve "${cfg[@]}" --addr 127.0.0.1:18940 --data-dir "$(mktemp -d)" --access-key $K --set signalr.addr= >/dev/null 2>&1 & SP=$!
		for _ in $(seq 50); do curl -sf http://127.0.0.1:18940/api/health >/dev/null && break; sleep 0.2; done
		echo "=== pass $pass $mode $(date -u +%H:%M:%S) load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $OUT
		bin/switchboard bench presence --connection-string "Endpoint=http://127.0.0.1:18940;AccessKey=$K;Version=1.0;" --server-pid $SP \
			--conns 1000 --users 500 --groups 20 --publishers 4 --messages 2000 --runs 3 2>/dev/null | tee -a $OUT
		kill $SP; wait $SP 2>/dev/null
	done
done
