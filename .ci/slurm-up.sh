#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine, for the tests marked `slurm`.
#
# Installs Debian's slurm-wlm and munge when they are missing, writes a minimal
# /etc/slurm/slurm.conf for one node (this host, reached at 127.0.0.1: no traffic leaves the
# machine), starts munged, slurmctld and slurmd, and waits until the node is idle. Idempotent:
# a second call that finds the cluster answering exits at once. Every wait is bounded
# (SLURM_UP_WAIT_S, default 60 s); on failure it prints the daemons' log tails and exits 1.
# Needs root (to install and start daemons); meant for CI machines and containers (no systemd,
# no cgroups: processes are tracked through /proc).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by pcnbench .ci/slurm-up.sh"
WAIT_S=${SLURM_UP_WAIT_S:-60}
NODE=$(hostname -s)

say() { echo "slurm-up: $*" >&2; }

# the node's state as sinfo says it ("idle", "mix", "down*", ...); empty when no one answers
node_state() { timeout 10 sinfo -h -o %t 2>/dev/null | head -n1 || true; }

# up: the controller answers and the node takes jobs (idle, or already running some)
is_up() { case "$(node_state)" in idle | mix | alloc | comp) return 0 ;; *) return 1 ;; esac }

logs() {
    for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/munge/munged.log; do
        [ -f "$f" ] && { say "--- tail of $f"; tail -n 15 "$f" >&2; }
    done
    return 0
}

# the daemons of a cluster this script set up run here (a controller may report a node idle
# for minutes after its slurmd died); on any other cluster, sinfo's word is enough
munge_ok() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }
daemons_ok() {
    grep -qF "$MARK" "$CONF" 2>/dev/null || return 0
    pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null && munge_ok
}

if command -v sinfo >/dev/null && is_up && daemons_ok; then
    say "already running: node $NODE is $(node_state)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "no SLURM cluster answers, and starting one needs root"
    exit 1
fi

# 1. packages (only when missing)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# 2. munge: a key, then the daemon (as its own user, as Debian's service runs it)
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating a munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge_ok; then
    say "starting munged"
    timeout 30 runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 20); do munge_ok && break; sleep 0.5; done
    munge_ok || { say "munged does not answer"; logs; exit 1; }
fi

# 3. slurm.conf: one node, this host, its real CPUs and memory; never over an admin's own file
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "keeping $CONF (not written by this script)"
else
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ... RealMemory=24105"
    hardware=$(timeout 30 slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //')
    install -d -m 0755 /etc/slurm
    cat >"$CONF.new" <<EOF
$MARK: a single-node cluster on localhost for tests
ClusterName=pcnbench-ci
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# no cgroups in a container: track processes through /proc, bind no tasks
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
# cores are the consumable: jobs share the node's memory rather than each taking all of it
SelectTypeParameters=CR_Core
ReturnToService=2
# a cancelled job gets SIGKILL 5 s after SIGTERM (default 30)
KillWait=5
# finished jobs stay visible to squeue/scontrol for 10 minutes (no accounting database here)
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE $hardware State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if ! cmp -s "$CONF.new" "$CONF"; then
        mv "$CONF.new" "$CONF"
        # a controller already running reads the new file
        if pgrep -x slurmctld >/dev/null; then timeout 30 scontrol reconfigure || true; fi
    else
        rm -f "$CONF.new"
    fi
fi
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
install -d -m 0755 /var/spool/slurmd

# 4. the daemons (they fork into the background themselves)
if ! pgrep -x slurmctld >/dev/null; then
    say "starting slurmctld"
    timeout 60 slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
    say "starting slurmd"
    timeout 60 slurmd
fi

# 5. wait for an idle node; resume it once if it registered down or drained
deadline=$((SECONDS + WAIT_S))
resumed=no
while ((SECONDS < deadline)); do
    state=$(node_state)
    if is_up; then
        say "up: node $NODE is $state ($(sinfo -h -o '%c CPUs, %m MB' | head -n1))"
        exit 0
    fi
    case "$state" in
        down* | drain* | drng*)
            if [ "$resumed" = no ]; then
                say "node $NODE is $state: resuming it"
                timeout 10 scontrol update nodename="$NODE" state=resume || true
                resumed=yes
            fi
            ;;
    esac
    sleep 1
done
say "the node is not idle after ${WAIT_S}s (state: '$(node_state)')"
timeout 10 scontrol show node "$NODE" >&2 || true
logs
exit 1
