#!/usr/bin/env bash
# Sourced helper: makes sure DATABASE_URL points at a usable PostgreSQL.
#
#   source scripts/lib/postgres.sh
#   jobq_postgres_up        # reuses $DATABASE_URL, or starts a throwaway server
#
# Call jobq_postgres_up in the script's own shell (not inside $(...) or a
# subshell): the cleanup is an EXIT trap of the shell that called it.
#
# Traps: jobq_postgres_up installs an EXIT trap that runs jobq_postgres_down,
# chained in front of any EXIT trap that was already set. INT/TERM/HUP just
# `exit`, which fires that EXIT trap. A caller that sets its OWN EXIT trap
# after jobq_postgres_up replaces ours and must call jobq_postgres_down in it.
#
# When it starts a server it exports:
#   DATABASE_URL      postgres://postgres@127.0.0.1:PORT/postgres (trust auth)
#   JOBQ_PG_BINDIR    directory holding initdb, pg_ctl, postgres
#   JOBQ_PG_DATADIR   the cluster's data directory
#   JOBQ_PG_PORT      TCP port on 127.0.0.1
#   JOBQ_PG_CTL       path of scripts/pg-ctl: `$JOBQ_PG_CTL ARGS...` runs
#                     `pg_ctl -D $JOBQ_PG_DATADIR ARGS...` as the server's user
#   JOBQ_PG_RESTART   path of scripts/pg-restart (fast restart, same options)
# When DATABASE_URL was already set, none of the JOBQ_PG_* are exported by us.
#
# Strict mode is what every caller (scripts/*) wants; note that sourcing this
# from an interactive shell turns it on there too. The functions below check
# their own errors, so they also behave when errexit is off.
set -euo pipefail

_JOBQ_PG_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
_JOBQ_PG_SCRIPTS_DIR="$(dirname "$_JOBQ_PG_LIB_DIR")"
# The throwaway server's temp dir; empty when we did not start one (or it is
# already cleaned up), which makes jobq_postgres_down idempotent.
_JOBQ_PG_TMPDIR=""

_jobq_pg_log() { printf 'jobq: %s\n' "$*" >&2; }

# POSIX-sh single quoting, for strings handed to /bin/sh (su -c, pg_ctl -o).
_jobq_pg_shquote() {
  local s=${1//\'/\'\\\'\'}
  printf "'%s'" "$s"
}

# Runs a command as the OS user owning the server. PostgreSQL refuses to run
# as root, so as root (the CI case) that is the `postgres` user.
_jobq_pg_as_owner() {
  if [[ $EUID -ne 0 ]]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    # su needs one command string; -s because a system user's shell may be
    # nologin.
    local cmd="" arg
    for arg in "$@"; do cmd+="$(_jobq_pg_shquote "$arg") "; done
    su postgres -s /bin/sh -c "$cmd"
  fi
}

# True if DIR holds the three server binaries we need.
_jobq_pg_bindir_ok() {
  [[ -x $1/initdb && -x $1/pg_ctl && -x $1/postgres ]]
}

# Prints the directory holding initdb/pg_ctl/postgres, or fails.
_jobq_pg_find_bindir() {
  local exe dir
  # PATH first. Resolve symlinks: pg_ctl looks for `postgres` next to its real
  # location, so that is the directory that must hold all three.
  if exe=$(command -v pg_ctl 2>/dev/null) && [[ -n $exe ]]; then
    dir=$(dirname "$(readlink -f "$exe")")
    if _jobq_pg_bindir_ok "$dir"; then
      printf '%s\n' "$dir"
      return 0
    fi
  fi
  # Debian/Ubuntu layout, highest major version first.
  local dirs=()
  mapfile -t dirs < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -rV)
  for dir in "${dirs[@]}"; do
    if _jobq_pg_bindir_ok "$dir"; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# Installs the server (root + apt only) when no binaries are found.
_jobq_pg_install() {
  if [[ $EUID -ne 0 ]]; then
    _jobq_pg_log "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin."
    _jobq_pg_log "Install the PostgreSQL server (e.g. 'sudo apt-get install postgresql'), or set DATABASE_URL to an existing server."
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _jobq_pg_log "PostgreSQL server binaries not found and apt-get is unavailable: install the PostgreSQL server or set DATABASE_URL."
    return 1
  fi
  _jobq_pg_log "PostgreSQL not found; installing it with apt-get..."
  # Quiet unless it fails: apt output would drown the test output.
  local log
  log=$(mktemp) || return 1
  if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -f "$log"
    _jobq_pg_log "apt-get install postgresql failed (see above)."
    return 1
  fi
  rm -f "$log"
}

# As root, the server needs the `postgres` OS user; create it if missing.
_jobq_pg_ensure_user() {
  [[ $EUID -eq 0 ]] || return 0
  id -u postgres >/dev/null 2>&1 && return 0
  if ! command -v useradd >/dev/null 2>&1; then
    _jobq_pg_log "running as root, no 'postgres' OS user and no useradd to create it."
    return 1
  fi
  # Reuse a leftover `postgres` group rather than failing on it.
  local group_opt=(--user-group)
  if getent group postgres >/dev/null 2>&1; then group_opt=(--gid postgres); fi
  useradd --system "${group_opt[@]}" --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin postgres || {
    _jobq_pg_log "could not create the 'postgres' OS user."
    return 1
  }
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
_jobq_pg_port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints a random port in 20000-60000 that nothing listens on.
_jobq_pg_free_port() {
  local i port
  for ((i = 0; i < 50; i++)); do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
    if ! _jobq_pg_port_busy "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  _jobq_pg_log "no free TCP port found in 20000-60000."
  return 1
}

# Prints DATABASE_URL without credentials or query string, for the log line.
_jobq_pg_redacted_url() {
  local url=$1 rest
  if [[ $url != *://* ]]; then
    printf '(DATABASE_URL from the environment)\n'
    return 0
  fi
  rest=${url#*://}
  rest=${rest%%\?*}
  rest=${rest##*@}
  printf '%s://%s\n' "${url%%://*}" "$rest"
}

jobq_postgres_up() {
  # An explicit DATABASE_URL always wins: use it as it is.
  if [[ -n ${DATABASE_URL:-} ]]; then
    _jobq_pg_log "using PostgreSQL at $(_jobq_pg_redacted_url "$DATABASE_URL") (DATABASE_URL)"
    return 0
  fi

  local bindir
  if ! bindir=$(_jobq_pg_find_bindir); then
    _jobq_pg_install || return 1
    bindir=$(_jobq_pg_find_bindir) || {
      _jobq_pg_log "PostgreSQL installed but initdb/pg_ctl/postgres still not found."
      return 1
    }
  fi
  _jobq_pg_ensure_user || return 1

  local tmpdir
  tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/jobq-pg.XXXXXX") || return 1
  tmpdir=$(cd "$tmpdir" && pwd -P) || return 1
  # Cleanup is registered before anything can fail, so a failed start still
  # removes the temp dir.
  _JOBQ_PG_TMPDIR=$tmpdir
  _jobq_pg_install_traps

  if [[ $EUID -eq 0 ]]; then
    chown postgres: "$tmpdir" || return 1
    # e.g. a TMPDIR under /root is not reachable for the postgres user.
    if ! _jobq_pg_as_owner test -w "$tmpdir"; then
      _jobq_pg_log "the postgres OS user cannot write to $tmpdir; set TMPDIR to a world-accessible directory such as /tmp."
      return 1
    fi
  fi

  local datadir=$tmpdir/data log=$tmpdir/server.log
  # Run from the temp dir: the postgres user may not be able to read our cwd.
  if ! (cd "$tmpdir" && _jobq_pg_as_owner "$bindir/initdb" -D "$datadir" \
    -A trust -U postgres -E UTF8 --no-locale >"$tmpdir/initdb.log" 2>&1); then
    tail -n 30 "$tmpdir/initdb.log" >&2
    _jobq_pg_log "initdb failed (see above)."
    return 1
  fi

  # A port can be taken between our check and the server's bind: retry then.
  local attempt port opts
  for ((attempt = 1; ; attempt++)); do
    port=$(_jobq_pg_free_port) || return 1
    # 127.0.0.1 only; the unix socket stays in our private dir. fsync and
    # synchronous_commit are left ON so tests see real durability behaviour.
    opts="-h 127.0.0.1 -p $port -k $(_jobq_pg_shquote "$tmpdir")"
    opts+=" -c max_connections=300 -c shared_buffers=256MB"
    if (cd "$tmpdir" && _jobq_pg_as_owner "$bindir/pg_ctl" -D "$datadir" -w \
      -l "$log" -o "$opts" start >/dev/null 2>&1); then
      break
    fi
    if ((attempt < 3)) && grep -q 'Address already in use' "$log" 2>/dev/null; then
      continue
    fi
    tail -n 30 "$log" >&2 2>/dev/null || true
    _jobq_pg_log "PostgreSQL failed to start (server log tail above)."
    return 1
  done

  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export JOBQ_PG_BINDIR=$bindir
  export JOBQ_PG_DATADIR=$datadir
  export JOBQ_PG_PORT=$port
  export JOBQ_PG_CTL=$_JOBQ_PG_SCRIPTS_DIR/pg-ctl
  export JOBQ_PG_RESTART=$_JOBQ_PG_SCRIPTS_DIR/pg-restart

  # `postgres --version` prints e.g. "postgres (PostgreSQL) 15.14 (Debian ...)".
  local version=""
  read -r _ _ version _ < <("$bindir/postgres" --version 2>/dev/null) || true
  _jobq_pg_log "started throwaway PostgreSQL ${version:-?} at 127.0.0.1:$port (data: $datadir)"
}

# Stops the throwaway server and removes its temp dir. Safe to call more than
# once, and a no-op when DATABASE_URL came from the environment.
jobq_postgres_down() {
  local tmpdir=$_JOBQ_PG_TMPDIR
  [[ -n $tmpdir ]] || return 0
  _JOBQ_PG_TMPDIR=""
  local datadir=$tmpdir/data bindir=${JOBQ_PG_BINDIR:-}
  if [[ -f $datadir/postmaster.pid ]]; then
    if [[ -z $bindir ]]; then bindir=$(_jobq_pg_find_bindir) || bindir=""; fi
    if [[ -n $bindir ]]; then
      (cd "$tmpdir" && _jobq_pg_as_owner "$bindir/pg_ctl" -D "$datadir" \
        -m immediate -w stop >/dev/null 2>&1) || true
    fi
    # Last resort if pg_ctl could not stop it: kill the postmaster.
    if [[ -f $datadir/postmaster.pid ]]; then
      local pid
      pid=$(head -n 1 "$datadir/postmaster.pid" 2>/dev/null) || pid=""
      if [[ $pid =~ ^[0-9]+$ ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  fi
  # Guard rm -rf: only ever our own mktemp directory.
  if [[ $(basename "$tmpdir") == jobq-pg.* ]]; then rm -rf -- "$tmpdir"; fi
  if [[ ${JOBQ_PG_DATADIR:-} == "$datadir" ]]; then
    unset DATABASE_URL JOBQ_PG_BINDIR JOBQ_PG_DATADIR JOBQ_PG_PORT \
      JOBQ_PG_CTL JOBQ_PG_RESTART
  fi
}

# Prints the command of the current EXIT trap (empty if none).
_jobq_pg_trap_cmd() { printf '%s' "${3:-}"; }

_jobq_pg_install_traps() {
  local old
  old=$(eval "_jobq_pg_trap_cmd $(trap -p EXIT)")
  if [[ $old == *jobq_postgres_down* ]]; then
    : # already chained (jobq_postgres_up called again after a down)
  elif [[ -n $old ]]; then
    # shellcheck disable=SC2064 # expand the caller's trap now, on purpose
    trap "jobq_postgres_down; $old" EXIT
  else
    trap jobq_postgres_down EXIT
  fi
  # Exiting fires the EXIT trap; keep a caller's own signal traps if any.
  [[ -n $(trap -p INT) ]] || trap 'exit 130' INT
  [[ -n $(trap -p TERM) ]] || trap 'exit 143' TERM
  [[ -n $(trap -p HUP) ]] || trap 'exit 129' HUP
}
