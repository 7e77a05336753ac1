#!/usr/bin/env bash
# Start (or stop, or report) the project's own PostgreSQL, MariaDB and Redis on loopback.
#
#   bash hack/services.sh start|stop|status
#
# There is no systemd here and the distribution's init scripts are not allowed to run, so each
# server runs as a plain background process with its data under $CLUSTERPEDIA_CACHE/services/, on
# ports that do not clash with a system instance:
#   PostgreSQL 15  127.0.0.1:55432  user/password clusterpedia/clusterpedia (CREATEDB), db clusterpedia
#   MariaDB        127.0.0.1:53306  user/password clusterpedia/clusterpedia (ALL), db clusterpedia
#   Redis          127.0.0.1:56379  no persistence
# The packages are installed from Debian only when missing. `start` is idempotent: a server that
# already answers is left alone. The URLs are written to $CLUSTERPEDIA_CACHE/services/env.
#
# These are throw-away test instances: durability is switched off for speed (fsync, doublewrite).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/versions.sh
source "$HERE/versions.sh"

SVC="$CLUSTERPEDIA_CACHE/services"
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=55432
MY_PORT=53306
REDIS_PORT=56379
DB_USER=clusterpedia
DB_PASS=clusterpedia
DB_NAME=clusterpedia

PG_DIR="$SVC/postgres"
MY_DIR="$SVC/mariadb"
REDIS_DIR="$SVC/redis"

log() { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages
APT_UPDATED=0
ensure_pkg() { # ensure_pkg <command-to-test> <debian package>
  if [[ -x "$1" ]] || command -v "$1" >/dev/null 2>&1; then return; fi
  [[ $EUID -eq 0 ]] || die "$2 is missing and installing it needs root (apt-get install $2)"
  log "installing $2 from Debian ..."
  if [[ $APT_UPDATED -eq 0 ]]; then apt-get update -qq; APT_UPDATED=1; fi
  # policy-rc.d denial keeps the package from starting the distribution's own instance.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
    || die "apt-get install $2 failed"
}

ensure_packages() {
  ensure_pkg "$PG_BIN/postgres" postgresql-15
  ensure_pkg "$PG_BIN/psql" postgresql-client-15
  ensure_pkg mariadbd mariadb-server
  ensure_pkg mariadb mariadb-client
  ensure_pkg redis-server redis-server
  ensure_pkg redis-cli redis-tools
}

wait_for() { # wait_for <what> <seconds> <logfile> <command...>
  local what="$1" secs="$2" logf="$3"; shift 3
  local i
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  printf '[services] ERROR: %s did not answer within %ss. Last lines of %s:\n' "$what" "$secs" "$logf" >&2
  tail -n 30 "$logf" >&2 2>/dev/null || true
  exit 1
}

# ---------------------------------------------------------------- PostgreSQL
# PostgreSQL refuses to run as root. As root we run it as the `postgres` user; since the cache may
# live under a home directory other users cannot traverse (/root is 0700), the server gets only the
# capability to traverse directories (CAP_DAC_READ_SEARCH), nothing else.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    setpriv --reuid postgres --regid postgres --init-groups \
      --inh-caps +dac_read_search --ambient-caps +dac_read_search "$@"
  else
    "$@"
  fi
}

pg_ok() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_sql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/run" -p "$PG_PORT" -U postgres -d postgres "$@"; }

pg_start() {
  if pg_ok; then log "postgresql answers on 127.0.0.1:$PG_PORT"; pg_setup; return; fi
  mkdir -p "$PG_DIR/run"
  if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
    log "initdb $PG_DIR/data"
    rm -rf "$PG_DIR/data"
    mkdir -p "$PG_DIR/data"
    [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
    chmod 700 "$PG_DIR/data"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 || { tail -n 30 "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF

# clusterpedia-py test instance (hack/services.sh)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR/run'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  [[ $EUID -eq 0 ]] && chown -R postgres:postgres "$PG_DIR"
  log "starting postgresql on 127.0.0.1:$PG_PORT"
  # setsid: the server must outlive the shell (and the process group) that started it.
  as_pg setsid "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -s -w -t 60 start 9>&- \
    || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "postgresql did not start"; }
  wait_for postgresql 60 "$PG_DIR/postgres.log" pg_ok
  pg_setup
}

pg_setup() {
  pg_sql <<SQL
SELECT 'CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD ''$DB_PASS'''
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER') \gexec
ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

pg_stop() {
  if [[ -f "$PG_DIR/data/postmaster.pid" ]]; then
    log "stopping postgresql"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -s -m fast -w -t 60 stop || true
  fi
}

# ---------------------------------------------------------------- MariaDB
MY_CNF="$MY_DIR/my.cnf"
my_ok() { mariadb-admin --defaults-file="$MY_CNF" --connect-timeout=2 ping >/dev/null 2>&1; }
my_sql() { mariadb --defaults-file="$MY_CNF" -u "$(id -un)" "$@"; }  # socket auth as the OS user

my_write_cnf() {
  mkdir -p "$MY_DIR/data" "$MY_DIR/tmp"
  cat >"$MY_CNF" <<CNF
# clusterpedia-py test instance (hack/services.sh); read with --defaults-file only.
[mysqld]
datadir = $MY_DIR/data
tmpdir = $MY_DIR/tmp
socket = $MY_DIR/mysqld.sock
pid-file = $MY_DIR/mysqld.pid
log-error = $MY_DIR/mysqld.log
port = $MY_PORT
bind-address = 127.0.0.1
skip-name-resolve
character-set-server = utf8mb4
collation-server = utf8mb4_bin
max_connections = 300
innodb_buffer_pool_size = 256M
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_flush_method = nosync
performance_schema = OFF

[client]
socket = $MY_DIR/mysqld.sock
port = $MY_PORT

CNF
}

my_start() {
  my_write_cnf
  if my_ok; then log "mariadb answers on 127.0.0.1:$MY_PORT"; my_setup; return; fi
  if [[ ! -d "$MY_DIR/data/mysql" ]]; then
    log "mariadb-install-db $MY_DIR/data"
    rm -rf "$MY_DIR/data"; mkdir -p "$MY_DIR/data"
    mariadb-install-db --defaults-file="$MY_CNF" --user="$(id -un)" --skip-test-db \
      --auth-root-authentication-method=socket >"$MY_DIR/install-db.log" 2>&1 \
      || { tail -n 30 "$MY_DIR/install-db.log" >&2; die "mariadb-install-db failed"; }
  fi
  log "starting mariadb on 127.0.0.1:$MY_PORT"
  # --user=<self>: mariadbd refuses to run as root unless told so explicitly.
  setsid -f mariadbd --defaults-file="$MY_CNF" --user="$(id -un)" </dev/null >>"$MY_DIR/mysqld.out" 2>&1 9>&-
  wait_for mariadb 60 "$MY_DIR/mysqld.log" my_ok
  my_setup
}

my_setup() {
  my_sql <<SQL
CREATE DATABASE IF NOT EXISTS \`$DB_NAME\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

my_stop() {
  if [[ -f "$MY_CNF" ]] && my_ok; then
    log "stopping mariadb"
    mariadb-admin --defaults-file="$MY_CNF" shutdown || true
  fi
}

# ---------------------------------------------------------------- Redis
redis_ok() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

redis_start() {
  if redis_ok; then log "redis answers on 127.0.0.1:$REDIS_PORT"; return; fi
  mkdir -p "$REDIS_DIR"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  # 64 databases: test modules each claim one (tests/conftest.py).
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --databases 64 \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --dir "$REDIS_DIR" 9>&- \
    || die "redis-server did not start"
  wait_for redis 30 "$REDIS_DIR/redis.log" redis_ok
}

redis_stop() {
  if redis_ok; then
    log "stopping redis"
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- env file
write_env() {
  mkdir -p "$SVC"
  cat >"$SVC/env.tmp" <<ENV
# written by hack/services.sh
CLUSTERPEDIA_TEST_POSTGRES=postgresql://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/$DB_NAME
CLUSTERPEDIA_TEST_MYSQL=mysql://$DB_USER:$DB_PASS@127.0.0.1:$MY_PORT/$DB_NAME
CLUSTERPEDIA_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT/0
ENV
  mv "$SVC/env.tmp" "$SVC/env"
}

status() {
  local rc=0
  if pg_ok; then echo "postgresql: running (127.0.0.1:$PG_PORT)"; else echo "postgresql: stopped"; rc=1; fi
  if [[ -f "$MY_CNF" ]] && my_ok >/dev/null 2>&1; then echo "mariadb:    running (127.0.0.1:$MY_PORT)"
  else echo "mariadb:    stopped"; rc=1; fi
  if redis_ok; then echo "redis:      running (127.0.0.1:$REDIS_PORT)"; else echo "redis:      stopped"; rc=1; fi
  return $rc
}

main() {
  case "${1:-}" in
    start)
      mkdir -p "$SVC"
      # one start at a time (several test sessions may call this at once); the servers are
      # started with fd 9 closed so they do not hold the lock.
      exec 9>"$SVC/.lock"
      flock -w 300 9 || die "another hack/services.sh is still running (lock $SVC/.lock)"
      ensure_packages
      pg_start
      my_start
      redis_start
      write_env
      log "all services up; URLs in $SVC/env"
      ;;
    stop)
      mkdir -p "$SVC"
      exec 9>"$SVC/.lock"
      flock -w 300 9 || die "another hack/services.sh is still running"
      redis_stop
      my_stop
      pg_stop
      ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
  esac
}

main "$@"
