#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for hesslab's Slurm executor tests and for trying
# `hesslab run --executor slurm` without a real cluster.
#
#   scripts/slurm-local.sh up      install (apt) if missing, write the config, start munged,
#                                  slurmctld and slurmd, wait until the node is idle
#   scripts/slurm-local.sh down    stop the daemons (the config and spool stay)
#   scripts/slurm-local.sh status  sinfo
#
# Runs as root (the daemons and `apt-get` need it). The node has this machine's cores and
# memory; jobs are tracked by /proc (proctrack/linuxproc) and not confined (task/none), so a job
# that exceeds its --mem is not killed here — on a real cluster with cgroups it would be.
set -euo pipefail

conf_dir=/etc/slurm
spool=/var/spool/slurm-hesslab
logs=/var/log/slurm-hesslab

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "slurm-local.sh: must run as root (it starts system daemons)" >&2
        exit 1
    fi
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    echo "slurm-local.sh: installing slurm-wlm and munge" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc --all)
    # Leave 5 % of the memory to the system, as a real node's RealMemory would.
    mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.95 }' /proc/meminfo)
    mkdir -p "$conf_dir" "$spool/ctld" "$spool/d" "$logs"
    cat >"$conf_dir/slurm.conf" <<EOF
# Written by hesslab's scripts/slurm-local.sh: a single-node cluster for tests.
ClusterName=hesslab-local
SlurmctldHost=$host
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Schedule soon after submission and after each completion (tests wait on it).
SchedulerParameters=sched_min_interval=100000,batch_sched_delay=0,default_queue_depth=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to scontrol for 10 minutes.
MinJobAge=600
MaxJobCount=100000
ReturnToService=2
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    # cgroup.conf is read even with task/none on some versions; keep it harmless.
    cat >"$conf_dir/cgroup.conf" <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
}

# Is a daemon alive? (A stopped munged can linger as a zombie of its launcher: not alive.)
alive() {
    pgrep -x "$1" -r R,S,D >/dev/null
}

start() {
    mkdir -p /run/munge
    chown munge:munge /run/munge 2>/dev/null || true
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        if [ ! -s /etc/munge/munge.key ]; then
            mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
                || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
            chown munge:munge /etc/munge/munge.key
            chmod 400 /etc/munge/munge.key
        fi
        runuser -u munge -- /usr/sbin/munged
    fi
    alive slurmctld || /usr/sbin/slurmctld
    alive slurmd || /usr/sbin/slurmd
    local host
    host=$(hostname -s)
    for _ in $(seq 1 60); do
        state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null || true)
        case "$state" in
            idle* | mixed* | allocated*) echo "slurm-local.sh: node $host is $state" >&2; return 0 ;;
            down* | drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    echo "slurm-local.sh: the node did not become idle; logs in $logs" >&2
    tail -n 20 "$logs"/*.log >&2 || true
    exit 1
}

stop() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    for _ in $(seq 1 20); do
        alive slurmd || alive slurmctld || break
        sleep 0.5
    done
    pkill -x munged 2>/dev/null || true
}

case "${1:-}" in
    up) need_root; install; write_config; start ;;
    down) need_root; stop ;;
    status) sinfo ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
