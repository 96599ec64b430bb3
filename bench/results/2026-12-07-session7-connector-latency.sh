# Session 7 connector latency: scripts (bash). ob.sh: one outbox run; kf.sh: one Kafka run;
# ab.sh: old/new outbox pairs; cpustat.sh: machine busy over a run. PostgreSQL 15 started as in
# bench/README 'Connectors: PostgreSQL outbox (session 7)' on 127.0.0.1:55432. sb-old: the server
# without the overlap, sb-new: with it (and the tool's 'outbox inserts' line; TOOL=sb-new for both).

#### /tmp/lat/cpustat.sh
# source me: cpu_begin; ...; cpu_end -> prints machine busy %
cpu_read() { awk '/^cpu /{idle=$5+$6; tot=0; for(i=2;i<=NF;i++) tot+=$i; print idle, tot}' /proc/stat; }
cpu_begin() { read I0 T0 < <(cpu_read); }
cpu_end() { read I1 T1 < <(cpu_read); echo "machine busy: $(( 100 * ( (T1-T0) - (I1-I0) ) / (T1-T0) ))% of 2 cores"; }

#### /tmp/lat/ob.sh
#!/bin/bash
# usage: ob.sh BIN RATE MESSAGES RUNS  -> one outbox bench
BIN=$1; RATE=$2; MSG=${3:-500}; RUNS=${4:-1}
D=$(mktemp -d /tmp/lat/run.XXXX)
cat > $D/config.yaml <<YAML
hubs:
  bench:
    history:
      - {pattern: "conn*", max_messages: 100000, max_age: 1h}
connectors:
  - name: bench
    type: postgres_outbox
    dsn: "postgres://postgres@127.0.0.1:55432/postgres"
    hub: bench
    group: "{key}"
    content_type: text/plain
    ordering: target
YAML
psql -q postgres://postgres@127.0.0.1:55432/postgres -c "DELETE FROM switchboard_outbox" >/dev/null
nice -n ${NICE:-10} $BIN serve --config $D/config.yaml --addr 127.0.0.1:0 --data-dir $D/data-sb --access-key obbench-key-0123456789 --set signalr.addr= > $D/sb.out 2>$D/sb.err &
PID=$!
for i in $(seq 50); do [ -s $D/sb.out ] && break; sleep 0.2; done
source /tmp/lat/cpustat.sh; cpu_begin
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) bin=$BIN rate=$RATE"
R=""; [ "$RATE" != "max" ] && R="--rate $RATE"
nice -n ${NICE:-10} ${TOOL:-$BIN} bench connector --connection-string "$(head -1 $D/sb.out)" --dsn postgres://postgres@127.0.0.1:55432/postgres --server-pid $PID --groups 64 --subscribers 64 --messages $MSG --runs $RUNS $R 2>&1 | tail -${TAILN:-8}
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
cpu_end
kill $PID; wait $PID 2>/dev/null
rm -rf $D

#### /tmp/lat/kf.sh
#!/bin/bash
# usage: kf.sh BIN RATE [MESSAGES] -> one Kafka connector bench (own kfake, own server)
BIN=$1; RATE=$2; MSG=${3:-1000}
D=$(mktemp -d /tmp/lat/krun.XXXX)
nice -n ${NICE:-10} $BIN bench kafka-broker --topic bench-connector:16 --serve > $D/kb.out 2>&1 &
KB=$!
for i in $(seq 50); do [ -s $D/kb.out ] && break; sleep 0.1; done
ADDR=$(awk '{print $2}' $D/kb.out)
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
nice -n ${NICE:-10} $BIN serve --config $D/config.yaml --addr 127.0.0.1:0 --data-dir $D/data-sb --access-key kbench-key-0123456789 --set signalr.addr= $SETX > $D/sb.out 2>$D/sb.err &
PID=$!
for i in $(seq 50); do [ -s $D/sb.out ] && break; sleep 0.2; done
source /tmp/lat/cpustat.sh; cpu_begin
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) bin=$BIN rate=$RATE"
R=""; [ "$RATE" != "max" ] && R="--rate $RATE"
nice -n ${NICE:-10} ${TOOL:-$BIN} bench connector --connection-string "$(head -1 $D/sb.out)" --brokers $ADDR --server-pid $PID --groups 64 --subscribers 64 --messages $MSG --runs 1 $R 2>&1 | grep -E "^ +1 |FAIL|rror"
cpu_end
kill $PID $KB; wait $PID $KB 2>/dev/null
rm -rf $D

#### /tmp/lat/ab.sh
#!/bin/bash
# ab.sh N RATE: N pairs alternating old/new outbox runs
for i in $(seq $1); do
  for b in old new; do ./ob.sh /tmp/lat/sb-$b $2 500 1 2>&1 | grep -E "load:|^ +1 |FAIL|outbox inserts" | sed "s/^/$b /"; done
done
