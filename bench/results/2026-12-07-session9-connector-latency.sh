#!/bin/bash
# Session 9 connector latency A/B (bash). Usage:
#   2026-12-07-session9-connector-latency.sh OLD_BIN NEW_BIN [PAIRS] [RATE] [MESSAGES]
# Like session 8's script (ordering: target, 64 history groups, 64 subscribers, RATE records/s,
# default 35000, MESSAGES per group, default 1000; each run its own `bench kafka-broker`, server
# and data directory; old/new alternated run by run), and per run also:
#   kfake%    the broker process's CPU over the tool's run (% of one core),
#   machine%  the whole machine's busy share over the tool's run (connecting and draining included),
#   freezes   wake-ups of an idle probe process (sleeping 1 ms at a time) more than 20 ms late:
#             the whole VM stopped (see bench/README "Connector latency (session 9)").
# It builds bench/gapprobe itself. TOOL=BIN runs the broker and the load tool of that binary for
# both (default: each run's own binary); the runs recorded used TOOL=NEW_BIN.
OLD=$1; NEW=$2; PAIRS=${3:-5}; RATE=${4:-35000}; MSG=${5:-1000}
[ -x "$OLD" ] && [ -x "$NEW" ] || { echo "usage: $0 OLD_BIN NEW_BIN [PAIRS] [RATE] [MESSAGES]" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/sb-lat9.XXXX)
(cd "$HERE/../gapprobe" && go build -o $W/gap .) || exit 1
cpu_read() { awk '/^cpu /{idle=$5+$6; tot=0; for(i=2;i<=NF;i++) tot+=$i; print idle, tot}' /proc/stat; }
one() { # one BIN LABEL
  local BIN=$1 L=$2 D; D=$(mktemp -d $W/run.XXXX)
  ${TOOL:-$BIN} bench kafka-broker --topic bench-connector:16 --serve > $D/kb.out 2>&1 &
  local KB=$!
  for i in $(seq 50); do [ -s $D/kb.out ] && break; sleep 0.1; done
  local ADDR; ADDR=$(awk '{print $2}' $D/kb.out)
  cat > $D/config.yaml <<YAML
hubs:
  bench:
    history:
      - {pattern: "conn*", max_messages: 100000, max_age: 1h}
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
  $BIN serve --config $D/config.yaml --addr 127.0.0.1:0 --data-dir $D/data-sb --access-key kbench-key-0123456789 --set signalr.addr= > $D/sb.out 2>$D/sb.err &
  local PID=$!
  for i in $(seq 50); do [ -s $D/sb.out ] && break; sleep 0.2; done
  $W/gap > $D/gap.out 2>&1 &
  local GP=$!
  local I0 T0 I1 T1 K0 K1 ROW
  read I0 T0 < <(cpu_read); K0=$(awk '{print $14+$15}' /proc/$KB/stat)
  ROW=$(${TOOL:-$BIN} bench connector --connection-string "$(head -1 $D/sb.out)" --brokers $ADDR --server-pid $PID \
    --groups 64 --subscribers 64 --messages $MSG --runs 1 --rate $RATE 2>&1 | grep -E "^ +1 |FAIL|rror")
  read I1 T1 < <(cpu_read); K1=$(awk '{print $14+$15}' /proc/$KB/stat)
  kill -INT $GP; wait $GP
  echo "$L |$ROW | kfake% $(( (K1-K0) * 200 / (T1-T0) )) machine% $(( 100 * ( (T1-T0) - (I1-I0) ) / (T1-T0) )) | $(cat $D/gap.out)"
  kill $PID $KB; wait $PID $KB 2>/dev/null
  rm -rf $D
}
echo "columns of the row: run conns sent delivered deliveries/s p50 p90 p99 p99.9 max lost dup ooo srvCPU% toolCPU% srvRSS"
for i in $(seq $PAIRS); do
  one $OLD old | tee -a $W/all
  one $NEW new | tee -a $W/all
done
for L in old new; do
  echo "$L p50: $(awk -F'|' -v l="$L " '$1==l {split($2,a," "); printf "%s ", a[6]}' $W/all)"
  echo "$L p99: $(awk -F'|' -v l="$L " '$1==l {split($2,a," "); printf "%s ", a[8]}' $W/all)"
done
rm -rf $W
