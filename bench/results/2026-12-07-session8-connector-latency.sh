#!/bin/bash
# Session 8 connector latency A/B (bash). Usage:
#   2026-12-07-session8-connector-latency.sh OLD_BIN NEW_BIN [PAIRS] [RATE] [MESSAGES]
# Runs PAIRS pairs (default 5) of the Kafka connector bench (ordering: target, 64 history groups,
# 64 subscribers, RATE records/s, default 34000, MESSAGES per group, default 1000), alternating
# old/new run by run; each run has its own kfake broker, server and data directory. Prints per run
# the load average, the machine's busy share over the run and the tool's result row, then p50/p99
# per binary. Build the two binaries with `go build -o X ./cmd/switchboard` at the two commits.
OLD=$1; NEW=$2; PAIRS=${3:-5}; RATE=${4:-34000}; MSG=${5:-1000}
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "usage: $0 OLD_BIN NEW_BIN [PAIRS] [RATE] [MESSAGES]" >&2; exit 2; }
W=$(mktemp -d /tmp/sb-lat8.XXXX)
cpu_read() { awk '/^cpu /{idle=$5+$6; tot=0; for(i=2;i<=NF;i++) tot+=$i; print idle, tot}' /proc/stat; }
one() { # one BIN LABEL
  local BIN=$1 L=$2 D; D=$(mktemp -d $W/run.XXXX)
  $BIN bench kafka-broker --topic bench-connector:16 --serve > $D/kb.out 2>&1 &
  local KB=$!
  for i in $(seq 50); do [ -s $D/kb.out ] && break; sleep 0.1; done
  local ADDR; ADDR=$(awk '{print $2}' $D/kb.out)
  cat > $D/config.yaml <<YAML
hubs:
  bench:
    history:
      - {pattern: "${HPAT:-conn*}", max_messages: 100000, max_age: 1h}
connectors:
  - name: bench
    type: kafka
    brokers: ["$ADDR"]
    topics: [bench-connector]
    consumer_group: bench
    start_offset: earliest
    hub: bench
    group: "{key}"
    content_type: text/plain
    ordering: target
YAML
  $BIN serve --config $D/config.yaml --addr 127.0.0.1:0 --data-dir $D/data-sb --access-key kbench-key-0123456789 --set signalr.addr= $SETX > $D/sb.out 2>$D/sb.err &
  local PID=$!
  for i in $(seq 50); do [ -s $D/sb.out ] && break; sleep 0.2; done
  local I0 T0 I1 T1 LOAD ROW
  read I0 T0 < <(cpu_read); LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
  ROW=$($BIN bench connector --connection-string "$(head -1 $D/sb.out)" --brokers $ADDR --server-pid $PID \
    --groups 64 --subscribers 64 --messages $MSG --runs 1 --rate $RATE 2>&1 | grep -E "^ +1 |FAIL|rror")
  read I1 T1 < <(cpu_read)
  echo "$L load: $LOAD busy: $(( 100 * ( (T1-T0) - (I1-I0) ) / (T1-T0) ))% | $ROW"
  kill $PID $KB; wait $PID $KB 2>/dev/null
  rm -rf $D
}
echo "columns of the row: run conns sent delivered deliveries/s p50 p90 p99 p99.9 max lost dup ooo srvCPU% toolCPU% srvRSS"
for i in $(seq $PAIRS); do
  one $OLD old | tee -a $W/all
  one $NEW new | tee -a $W/all
done
for L in old new; do
  echo "$L p50: $(awk -v l=$L '$1==l {printf "%s ", $(NF-10)}' $W/all)"
  echo "$L p99: $(awk -v l=$L '$1==l {printf "%s ", $(NF-8)}' $W/all)"
done
rm -rf $W
