#!/bin/sh
# Starts one member of the Redis Sentinel set: `start-redis.sh node` (a Redis: master or replica)
# or `start-redis.sh sentinel`. Shared by this component and deploy/compose.sentinel.yml.
#
# Environment (addresses are host:port, as the other members reach this one):
#   REDIS_PASSWORD            of every node and every sentinel
#   REDIS_FIRST_MASTER        the node that is master when the set starts for the first time
#   MCP_JOBS_REDIS_SENTINELS, MCP_JOBS_REDIS_SENTINEL_MASTER   the same values mcp-jobs reads
#   REDIS_NODE, REDIS_MAXMEMORY   (node) this node's address, its maxmemory
#   SENTINEL_NODE                 (sentinel) this sentinel's address
#
# Nothing is persisted, so a node always starts empty, and the role it starts in matters: a node
# that restarted after it was master and came back as master before the sentinels noticed would
# make its replica resync from it, and the replica would drop every queued job and snapshot. So a
# starting node asks the sentinels first: if they name another node, it replicates that one; if
# they still name this one while they see a replica that is not down (it holds the data), or
# stop answering, it waits until they have promoted that replica (down-after-milliseconds, 5 s,
# and an election: seconds); if they name this one and no replica is up, there is no data to
# keep and it starts as master. When no sentinel answers for 5 s (the set's first start),
# REDIS_FIRST_MASTER says which node is master.
# Sentinels get a config file generated here at every start (in $TMPDIR, else /tmp: the root file
# system stays read-only); a restarted sentinel asks its peers which node is master now, and
# learns the rest (the other sentinels, replicas, epochs) from them and the master within seconds.
set -eu
export REDISCLI_AUTH="$REDIS_PASSWORD" # for redis-cli; the sentinels require the same password

# The first sentinel's answer to `SENTINEL ARGS...`; fails when none answers.
ask_sentinels() {
  for sentinel in $(echo "$MCP_JOBS_REDIS_SENTINELS" | tr ',' ' '); do
    if answer=$(timeout 3 redis-cli -e -h "${sentinel%:*}" -p "${sentinel##*:}" sentinel "$@" 2>/dev/null); then
      printf '%s\n' "$answer"
      return 0
    fi
  done
  return 1
}

# host:port of the master the sentinels name; fails when no sentinel answers.
current_master() {
  answer=$(ask_sentinels get-master-addr-by-name "$MCP_JOBS_REDIS_SENTINEL_MASTER") || return 1
  # shellcheck disable=SC2086 # host and port, one a line
  set -- $answer
  [ $# -eq 2 ] && echo "$1:$2"
}

# Whether the sentinels see a replica of the master that is not down: exit 0 when one has flags
# without s_down or o_down ("slave", "slave,promoted" while a failover promotes it, or
# "slave,disconnected" while a sentinel's link to it is re-made: it still holds the data, and if
# it is really gone the sentinels call it s_down within down-after-milliseconds), 1 when none,
# 2 when no sentinel answered.
replica_state() {
  answer=$(ask_sentinels replicas "$MCP_JOBS_REDIS_SENTINEL_MASTER") || return 2
  printf '%s\n' "$answer" |
    awk 'previous == "flags" && $0 !~ /s_down|o_down/ { up = 1 } { previous = $0 } END { exit !up }'
}

start_node() {
  # No sentinel answering is the set's first start, or a moment of load: ask a few times before
  # taking REDIS_FIRST_MASTER's word for it.
  master=""
  for _ in 1 2 3 4 5; do
    if master=$(current_master); then break; fi
    master=""
    sleep 1
  done
  # Named master by the sentinels, restarted empty: wait while a replica holds the data (or
  # while the sentinels cannot say), until they have promoted it.
  while [ "$master" = "$REDIS_NODE" ]; do
    if replica_state; then state=0; else state=$?; fi
    [ "$state" -eq 1 ] && break
    echo "The sentinels still name this node (restarted empty) master while a replica holds the data: waiting for them to promote it." >&2
    sleep 2
    master=$(current_master) || master=$REDIS_NODE
  done
  master=${master:-$REDIS_FIRST_MASTER}
  if [ "$master" = "$REDIS_NODE" ]; then
    echo "Starting as the master." >&2
    set --
  else
    echo "Starting as a replica of $master." >&2
    set -- --replicaof "${master%:*}" "${master##*:}"
  fi
  # masterauth on every node: after a failover the old master is a replica of the new one.
  # noeviction: a full Redis refuses writes (calls fail with an error) instead of silently dropping
  # queued jobs or snapshots. Size maxmemory as for the single Redis (the README's Operations).
  exec redis-server \
    --port "${REDIS_NODE##*:}" \
    --replica-announce-ip "${REDIS_NODE%:*}" \
    --replica-announce-port "${REDIS_NODE##*:}" \
    --requirepass "$REDIS_PASSWORD" \
    --masterauth "$REDIS_PASSWORD" \
    --save "" \
    --appendonly no \
    --maxmemory "$REDIS_MAXMEMORY" \
    --maxmemory-policy noeviction \
    "$@"
}

start_sentinel() {
  master=$(current_master) || master=$REDIS_FIRST_MASTER
  sentinels=$(echo "$MCP_JOBS_REDIS_SENTINELS" | tr ',' '\n' | grep -c .)
  quorum=$((sentinels / 2 + 1)) # a majority: 2 of 3
  name=$MCP_JOBS_REDIS_SENTINEL_MASTER
  folder=${TMPDIR:-/tmp}
  password=$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\"]/\\&/g') # a quoted string in the file
  umask 077
  # Hostnames, resolved again at each reconnection: pods come back with new addresses, not names.
  # down-after-milliseconds: how long the master may be silent before the failover starts;
  # failover-timeout: a failover that stalls (a split vote, a replica that does not answer) is
  # tried again after twice this.
  cat >"$folder/sentinel.conf" <<CONF
port ${SENTINEL_NODE##*:}
dir $folder
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip ${SENTINEL_NODE%:*}
sentinel announce-port ${SENTINEL_NODE##*:}
requirepass "$password"
sentinel monitor $name ${master%:*} ${master##*:} $quorum
sentinel auth-pass $name "$password"
sentinel down-after-milliseconds $name 5000
sentinel failover-timeout $name 10000
sentinel parallel-syncs $name 1
CONF
  exec redis-server "$folder/sentinel.conf" --sentinel
}

case "${1:-}" in
  node) start_node ;;
  sentinel) start_sentinel ;;
  *)
    echo "usage: start-redis.sh node|sentinel" >&2
    exit 2
    ;;
esac
