#!/usr/bin/env bash
# A single-node Apache Kafka broker in KRaft mode for the local stack and the tests.
# Jars come from Maven Central (pom.xml beside this file) into a cache directory; no Docker.
#   broker.sh start   start it in the background unless something already listens on the port
#   broker.sh stop    stop the broker this script started
#   broker.sh run     run it in the foreground (what the local stack's supervisor uses)
#   broker.sh status  exit 0 when the port answers
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${ACH_CACHE_DIR:-$root/.cache}"
libs="$cache/kafka/libs"
data="${KAFKA_DATA_DIR:-$root/.data/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
# A second listener as deployed clusters run: TLS + SASL/SCRAM, with ACLs enforced. The plaintext
# listener on $port stays open to the local services and tests (its anonymous principal is a super
# user here, and only here: it listens on 127.0.0.1 alone).
sasl_port="${KAFKA_SASL_PORT:-9094}"
tls="$data/tls"
pidfile="$data/broker.pid"
log="$data/broker.log"

die() { echo "kafka: $*" >&2; exit 1; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

resolve_jars() {
  if [ -f "$libs/.complete" ] && [ "$libs/.complete" -nt "$here/pom.xml" ]; then return; fi
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the broker's jars; install a JDK 17 and Maven, or set KAFKA_BOOTSTRAP_SERVERS"
  echo "kafka: resolving broker jars from Maven Central into $libs" >&2
  rm -rf "$libs" && mkdir -p "$libs"
  mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime \
    || die "could not resolve the broker's jars with Maven"
  touch "$libs/.complete"
}

make_tls() {
  # The broker's own development CA and certificate (clients trust $tls/ca.pem).
  [ -f "$tls/broker.pem" ] && return
  command -v openssl >/dev/null || die "openssl is needed to create the broker's TLS certificate"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ACH local Kafka CA" \
    -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/broker-key.rsa" \
    -out "$tls/broker.csr" 2>/dev/null
  printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > "$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
    -days 3650 -extfile "$tls/san.ext" -out "$tls/broker-cert.pem" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$tls/broker-key.rsa" -out "$tls/broker-key.pem"
  cat "$tls/broker-key.pem" "$tls/broker-cert.pem" > "$tls/broker.pem"
  chmod 600 "$tls"/*key* "$tls/broker.pem"
}

configure() {
  mkdir -p "$data/logs"
  make_tls
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_SSL://127.0.0.1:$sasl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sasl_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:ANONYMOUS
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
log.cleaner.backoff.ms=5000
PROPS
  cat > "$data/log4j.properties" <<PROPS
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.BrokerServer=WARN
PROPS
  if [ ! -f "$data/logs/meta.properties" ]; then
    java "-Dlog4j.configuration=file:$data/log4j.properties" -cp "$libs/*" kafka.tools.StorageTool format -t "ach-local-cluster-0001" \
      -c "$data/server.properties" --ignore-formatted >/dev/null || die "could not format the KRaft log directory $data/logs"
  fi
}

java_cmd() {
  command -v java >/dev/null || die "a JDK (java) is needed for the local broker; or set KAFKA_BOOTSTRAP_SERVERS"
  # 1.5 GB: a day of test runs leaves thousands of partitions in a local broker, and metadata for
  # each is held in the heap (512 MB ran out at about 15,000).
  cmd=(java -Xms256m -Xmx1536m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$data/log4j.properties" -cp "$libs/*" kafka.Kafka "$data/server.properties")
}

wait_ready() {
  for _ in $(seq 1 120); do
    listening && return 0
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -20 "$log" >&2; die "the broker exited during start-up (log: $log)"
    fi
    sleep 0.5
  done
  die "the broker did not listen on 127.0.0.1:$port within 60 s (log: $log)"
}

case "${1:-}" in
  start)
    if listening; then echo "kafka: already listening on 127.0.0.1:$port" >&2; exit 0; fi
    resolve_jars; configure
    java_cmd
    nohup "${cmd[@]}" >"$log" 2>&1 &
    echo $! > "$pidfile"
    wait_ready
    echo "kafka: broker up on 127.0.0.1:$port (log: $log)" >&2 ;;
  run)
    listening && die "something already listens on 127.0.0.1:$port"
    resolve_jars; configure
    java_cmd
    echo "kafka: broker starting on 127.0.0.1:$port (data: $data)" >&2
    exec "${cmd[@]}" ;;
  stop)
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
      for _ in $(seq 1 60); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.5; done
      rm -f "$pidfile"; echo "kafka: stopped" >&2
    fi ;;
  status) listening ;;
  *) echo "usage: $0 start|run|stop|status" >&2; exit 2 ;;
esac
