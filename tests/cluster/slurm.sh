#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the launcher tests:
#   tests/cluster/slurm.sh start [DIR]   # munged, MariaDB, slurmdbd, slurmctld, slurmd; prints SLURM_CONF=...
#   tests/cluster/slurm.sh stop [DIR]
# Everything (configs, keys, spool, database, logs) lives under DIR (default /tmp/darla-slurm); the
# daemons listen on localhost only. Needs root and Debian's slurm-wlm, slurmdbd, munge and
# mariadb-server packages (.ci/run installs them). Clients find the cluster through SLURM_CONF.
set -euo pipefail
cmd=${1:?usage: slurm.sh start|stop [DIR]}
D=$(realpath -m "${2:-/tmp/darla-slurm}")
PORT=${DARLA_SLURM_PORT:-16817}   # slurmctld; slurmd, slurmdbd and MariaDB take the next three

stop() {
  for daemon in slurmd slurmctld slurmdbd munged; do
    [ -f "$D/$daemon.pid" ] && kill "$(cat "$D/$daemon.pid")" 2>/dev/null || true
  done
  [ -S "$D/mysql.sock" ] && mariadb-admin --socket="$D/mysql.sock" shutdown 2>/dev/null || true
  for daemon in slurmd slurmctld slurmdbd munged; do
    for _ in $(seq 50); do
      [ -f "$D/$daemon.pid" ] && kill -0 "$(cat "$D/$daemon.pid")" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$D/$daemon.pid"
  done
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: run COMMAND until it succeeds
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "slurm.sh: $what did not come up within ${seconds}s; logs in $D" >&2
  tail -n 20 "$D"/*.log >&2 || true
  exit 1
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "slurm.sh: unknown command '$cmd' (start or stop)" >&2; exit 2; }
for tool in munged mariadbd slurmdbd slurmctld slurmd sacctmgr; do
  command -v "$tool" >/dev/null || { echo "slurm.sh: $tool not found (apt-get install slurm-wlm slurmdbd munge mariadb-server)" >&2; exit 1; }
done
stop
rm -rf "$D" && mkdir -p "$D/spool/ctld" "$D/spool/d" && chmod 755 "$D"
host=$(hostname -s)
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))

# munge: the credentials every SLURM daemon and client signs its messages with.
dd if=/dev/urandom of="$D/munge.key" bs=1024 count=1 status=none && chmod 400 "$D/munge.key"
munged --force --key-file="$D/munge.key" --socket="$D/munge.sock" --pid-file="$D/munged.pid" \
  --log-file="$D/munged.log" --seed-file="$D/munged.seed" </dev/null >/dev/null 2>&1
wait_for 10 munged test -S "$D/munge.sock"

# MariaDB: the database slurmdbd keeps the job accounting in (what sacct reads).
mariadb-install-db --user=root --datadir="$D/db" --auth-root-authentication-method=socket >"$D/mariadb-install.log" 2>&1
mariadbd --user=root --datadir="$D/db" --socket="$D/mysql.sock" --pid-file="$D/mariadbd.pid" \
  --bind-address=127.0.0.1 --port=$((PORT + 3)) --log-error="$D/mariadb.log" </dev/null >>"$D/mariadb.log" 2>&1 &
wait_for 60 MariaDB mariadb --socket="$D/mysql.sock" -e "SELECT 1"
mariadb --socket="$D/mysql.sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

auth="AuthType=auth/munge
AuthInfo=socket=$D/munge.sock"
cat >"$D/slurmdbd.conf" <<EOF
$auth
DbdHost=localhost
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=$D/slurmdbd.pid
LogFile=$D/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 "$D/slurmdbd.conf"

cat >"$D/slurm.conf" <<EOF
ClusterName=darla-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
$auth
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$((PORT + 2))
AccountingStoragePass=$D/munge.sock   # the munge socket for talking to slurmdbd
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
KillWait=10
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/slurm.conf"

slurmdbd </dev/null >/dev/null 2>&1   # reads slurmdbd.conf beside $SLURM_CONF
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster darla-test >/dev/null
slurmctld </dev/null >/dev/null 2>&1
slurmd </dev/null >/dev/null 2>&1
wait_for 60 "the node" sh -c "sinfo -h -N -o %t | grep -qx idle"
echo "SLURM_CONF=$D/slurm.conf"
