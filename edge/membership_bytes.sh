#!/usr/bin/env bash
# Usage: edge/membership_bytes.sh [N] [SECONDS]  (after cargo build). Membership bytes per node per second in a fleet of N nodes on 127.0.190-191.x, from
# each node's /metrics (plaintext bytes + 45 B seal + 28 B IP/UDP per datagram = wire bytes).
N=${1:-10}; WINDOW=${2:-60}
B=${BOCLUSTER:-$(dirname "$0")/../target/debug/bocluster}; D=$(mktemp -d); K=$($B keygen | tail -1)
ip() { local i=$1; echo "127.0.$((190 + i / 200)).$((i % 200 + 1))"; }
for i in $(seq 0 $((N-1))); do
  seed=""; [ $i -gt 0 ] && seed="BO_SEEDS=$(ip 0):9091"
  env BO_CLUSTER_KEY=$K BO_MYSQL=off BO_LOG=warn BO_LISTEN=$(ip $i):9091 BO_DATA_DIR=$D/n$i BO_NODE_ID=n$i $seed $B node >$D/n$i.log 2>&1 &
  echo $! >> $D/pids
done
sleep 20
snap() { for i in $(seq 0 $((N-1))); do curl -s $(ip $i):9090/metrics | awk -v i=$i '/^bocluster_membership_bytes_total\{direction="out"\}/{b=$2} /^bocluster_membership_packets_total\{direction="out"/{p+=$2} END{print i, b, p}'; done; }
alive=$($B sql --host $(ip 0):9090 "SHOW NODES" | grep -c " alive ")
snap > $D/a; sleep $WINDOW; snap > $D/b
paste $D/a $D/b | awk -v w=$WINDOW -v n=$N -v alive=$alive '{db=$5-$2; dp=$6-$3; tb+=db; tp+=dp} END{printf "N=%d alive_on_n0=%d: per node %.0f B/s plaintext, %.2f datagrams/s, %.0f B/s on the wire (+73 B each)\n", n, alive, tb/n/w, tp/n/w, (tb+tp*73)/n/w}'
kill $(cat $D/pids); sleep 1; rm -rf $D
