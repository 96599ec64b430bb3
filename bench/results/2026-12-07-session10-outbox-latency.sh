#!/bin/bash
# Session 10 outbox latency A/B (bash). Usage:
#   2026-12-07-session10-outbox-latency.sh OLD_BIN NEW_BIN [PAIRS] [RATE] [PARTITIONS] [MESSAGES]
# Needs a PostgreSQL at $DSN (default postgres://postgres@127.0.0.1:55432/postgres; bench/README
# "Connectors: PostgreSQL outbox (session 7)" starts one). Each run drops and remakes the outbox
# table with PARTITIONS (default 16) partitions, starts its own server (fresh data directory,
# history.fsync group_commit, ordering: target, 64 history groups) and the connector scenario
# with 64 subscribers at RATE rows/s (default 21000; 0: unpaced), MESSAGES per group (default
# 1000); old and new alternate run by run. TOOL=BIN runs the schema command and the load tool of
# that binary for both (default NEW_BIN). A row: the tool's result row, then its outbox inserts'
# queued-to-committed latency.
OLD=$1; NEW=$2; PAIRS=${3:-5}; RATE=${4:-21000}; P=${5:-16}; MSG=${6:-1000}
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "usage: $0 OLD_BIN NEW_BIN [PAIRS] [RATE] [PARTITIONS] [MESSAGES]" >&2; exit 2; }
DSN=${DSN:-postgres://postgres@127.0.0.1:55432/postgres}
TOOL=${TOOL:-$NEW}
one() { # one BIN LABEL
  local BIN=$1 L=$2 D; D=$(mktemp -d /tmp/sb-ob10.XXXX)
  psql -q "$DSN" -c "DROP TABLE IF EXISTS switchboard_outbox" 2>/dev/null
  $TOOL connectors schema postgres --partitions $P --dead-letter-table none | psql -q "$DSN" >/dev/null
  cat > $D/config.yaml <<YAML
hubs:
  bench:
    history:
      - {pattern: "conn*", max_messages: 100000, max_age: 1h}
connectors:
  - name: bench
    type: postgres_outbox
    dsn: "$DSN"
    hub: bench
    group: "{key}"
    content_type: text/plain
    ordering: target
YAML
  $BIN serve --config $D/config.yaml --addr 127.0.0.1:0 --data-dir $D/data-sb --access-key obbench-key-0123456789 --set signalr.addr= > $D/sb.out 2>$D/sb.err &
  local PID=$!
  for i in $(seq 50); do [ -s $D/sb.out ] && break; sleep 0.2; done
  local OUT; OUT=$($TOOL bench connector --connection-string "$(head -1 $D/sb.out)" --dsn "$DSN" --server-pid $PID \
    --groups 64 --subscribers 64 --messages $MSG --runs 1 --rate $RATE 2>&1)
  echo "$L P=$P rate=$RATE |$(echo "$OUT" | grep -E "^ +1 |FAIL|rror") | $(echo "$OUT" | grep "outbox inserts" | sed 's/outbox inserts: //')"
  kill $PID; wait $PID 2>/dev/null
  rm -rf $D
}
echo "columns of the row: run conns sent delivered deliveries/s p50 p90 p99 p99.9 max lost dup ooo srvCPU% toolCPU% srvRSS"
W=$(mktemp /tmp/sb-ob10-all.XXXX)
for i in $(seq $PAIRS); do
  one $OLD old | tee -a $W
  one $NEW new | tee -a $W
done
for L in old new; do
  echo "$L p50: $(awk -F'|' -v l="$L " 'index($1,l)==1 {split($2,a," "); printf "%s ", a[6]}' $W)"
  echo "$L p99: $(awk -F'|' -v l="$L " 'index($1,l)==1 {split($2,a," "); printf "%s ", a[8]}' $W)"
done
rm -f $W
