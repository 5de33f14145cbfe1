#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, for testing profiles/slurm for real.
#
# Idempotent: installs slurmctld, slurmd, slurm-client and munge with apt-get if missing,
# writes /etc/slurm/slurm.conf and gres.conf for a cluster named after `hostname -s` with
# this machine's real CPUs and memory and one fake GPU (so `gpu: 1` jobs are schedulable
# on a machine without one), starts munged, slurmctld and slurmd as root when they are
# not running, and waits until `sinfo` shows the node idle. Needs root. Without systemd
# (containers) the daemons are started directly.
#
# No slurmdbd: accounting is off (AccountingStorageType=accounting_storage/none), so
# `sacct` does not work here; MinJobAge keeps finished jobs visible to `squeue`, which is
# what profiles/slurm tells the executor plugin to poll (status_command: squeue).
#
#   scripts/slurm-up.sh          # start (or check) the cluster
#   scripts/slurm-up.sh --down   # stop the daemons this script started
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-up: must run as root (installs packages, starts daemons)" >&2
    exit 2
fi

host=$(hostname -s)
conf_dir=/etc/slurm
state_dir=/var/lib/kakashi-slurm
log_dir=/var/log/kakashi-slurm
run_dir=/run/kakashi-slurm

# The pid of a daemon from its pid file, if it is still running.
running() {
    local pidfile=$1
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

if [ "${1:-}" = "--down" ]; then
    for name in slurmd slurmctld; do
        if running "$run_dir/$name.pid"; then
            kill "$(cat "$run_dir/$name.pid")"
        fi
    done
    if running /run/munge/munged.pid; then
        kill "$(cat /run/munge/munged.pid)"
    fi
    exit 0
fi

missing=()
for tool in slurmctld slurmd sinfo munged; do
    command -v "$tool" >/dev/null 2>&1 || command -v "/usr/sbin/$tool" >/dev/null 2>&1 ||
        missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm-up: installing Slurm and munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be absent on a fresh machine; refresh only then.
    if ! apt-cache show slurmctld >/dev/null 2>&1; then
        apt-get update -qq
    fi
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$conf_dir" "$state_dir/ctld" "$state_dir/d" "$log_dir" "$run_dir"

# The node line from slurmd itself: the CPUs, sockets, cores and memory slurmd will
# report, so the node never drains for "low RealMemory" or a CPU mismatch.
node_line=$(/usr/sbin/slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host/")

conf=$(
    cat <<EOF
# Written by kakashi scripts/slurm-up.sh: a one-node test cluster.
ClusterName=$host
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state_dir/ctld
SlurmdSpoolDir=$state_dir/d
SlurmctldPidFile=$run_dir/slurmctld.pid
SlurmdPidFile=$run_dir/slurmd.pid
SlurmctldLogFile=$log_dir/slurmctld.log
SlurmdLogFile=$log_dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Containers have no usable cgroups: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# Memory is a consumable resource, so mem_mb requests are enforced at scheduling.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# No slurmdbd: no accounting, so sacct does not work; squeue keeps finished jobs for
# MinJobAge seconds, long enough for Snakemake's status polls to see them complete.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
MpiDefault=none
$node_line Gres=gpu:1 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
# A fake GPU: slurmd counts GPUs by their device files, so /dev/null stands in for
# one (a Count without a File registers as 0 GPUs and the node goes INVALID); no
# autodetection (there is no NVML).
gres="AutoDetect=off
NodeName=$host Name=gpu File=/dev/null"

changed=0
if [ "$(cat "$conf_dir/slurm.conf" 2>/dev/null)" != "$conf" ]; then
    printf '%s\n' "$conf" >"$conf_dir/slurm.conf"
    changed=1
fi
if [ "$(cat "$conf_dir/gres.conf" 2>/dev/null)" != "$gres" ]; then
    printf '%s\n' "$gres" >"$conf_dir/gres.conf"
    changed=1
fi
# The config changed under running daemons: restart them so they read it.
if [ "$changed" = 1 ]; then
    for name in slurmd slurmctld; do
        if running "$run_dir/$name.pid"; then
            kill "$(cat "$run_dir/$name.pid")"
            sleep 1
        fi
    done
fi

if ! running /run/munge/munged.pid; then
    mkdir -p /run/munge
    chown munge:munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        /usr/sbin/mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do
    munge -n >/dev/null 2>&1 && break
    sleep 0.2
done
munge -n | unmunge >/dev/null

if ! running "$run_dir/slurmctld.pid"; then
    /usr/sbin/slurmctld
fi
if ! running "$run_dir/slurmd.pid"; then
    /usr/sbin/slurmd
fi

# Wait for the node to register and become idle (a node left down by an earlier run is
# resumed: ReturnToService=2 covers a restart, this covers a manual drain).
for i in $(seq 60); do
    state=$(sinfo --noheader --nodes "$host" --format %T 2>/dev/null | head -n 1 || true)
    case "$state" in
    idle | mixed | allocated)
        echo "slurm-up: cluster $host is up (node $state); logs in $log_dir"
        exit 0
        ;;
    inval*)
        break # a config mismatch: restarting will not fix it; the reason is below
        ;;
    down* | drain* | drained*)
        scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
        ;;
    esac
    sleep 1
done
echo "slurm-up: node $host did not become idle (state: ${state:-unknown}); see $log_dir" >&2
sinfo -N --format "%N %T %E" >&2 || true
exit 1
