# --- SLURM helpers (render/scripts/slurm-lib.sh) ---
# The reason this program gives SLURM for a node it takes out; a node drained for any other reason (by an
# admin, by a health check) is never returned to service here.
readonly DRAIN_REASON="hyperscaler: node removed or replaced"
# Reasons of a node out for MIG: while its layout changes (the mig step, or slurmctld.sh before a restart
# that changes its GRES), and when its MIG devices differ from the layout (mig-gres.sh report). Only the
# node's own MIG steps return it to service; reconfigure does not wait for it.
readonly MIG_DRAIN_REASON="hyperscaler: MIG layout change"
# shellcheck disable=SC2034 # for the scripts that include this library
readonly MIG_MISMATCH_REASON="hyperscaler: MIG layout differs"
is_mig_reason() { case "$1" in "hyperscaler: MIG"*) return 0 ;; *) return 1 ;; esac; }

# slurmctld may be restarting, or too busy to answer right after `scontrol reconfigure` on a slow
# controller. A SLURM command failing then must never read as "no such node" or "no jobs left": that
# would skip a drain, or end one under running jobs. So every question below goes through slurm_ask.
readonly CTLD_WAIT_S=300
slurmctld_answers() { scontrol ping >/dev/null 2>&1; }
# slurm_ask CMD...: run a SLURM client command and print its output. While slurmctld does not answer,
# wait for it (up to CTLD_WAIT_S) and ask again; a command that fails twice in a row while slurmctld
# answers has given its own answer (an unknown node, say), and its status is returned.
slurm_ask() {
  local deadline=$((SECONDS + CTLD_WAIT_S)) out rc answered=0
  while :; do
    if out=$("$@"); then
      [ -z "$out" ] || printf '%s\n' "$out"
      return 0
    fi
    rc=$?
    if slurmctld_answers; then
      [ "$answered" -eq 0 ] || return "$rc"
      answered=1
    else
      answered=0
      [ "$SECONDS" -lt "$deadline" ] || die "slurmctld has not answered for ${CTLD_WAIT_S}s: cannot run $*"
      log "slurmctld does not answer: waiting to run $*"
      sleep 2
    fi
  done
}
# node_known NODE: slurmctld knows NODE (it was asked, and answered).
node_known() { slurm_ask scontrol show node "$1" >/dev/null 2>&1; }

# drain_and_wait NODE: drain, then wait for the node's jobs up to DRAIN_TIMEOUT seconds, then mark it down.
drain_and_wait() {
  local node=$1
  if ! node_known "$node"; then
    log "$node is not known to SLURM: nothing to drain"
    return 0
  fi
  slurm_ask scontrol update NodeName="$node" State=DRAIN Reason="$DRAIN_REASON"
  local deadline=$((SECONDS + DRAIN_TIMEOUT)) jobs
  while :; do
    # A plain assignment, not in a condition: a slurm_ask that gives up must stop the script (set -e),
    # not read as "no jobs left" (set -e ignores failures in a test or a loop's condition).
    jobs=$(slurm_ask squeue -h -w "$node" -o %i)
    [ -n "$jobs" ] || break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "WARNING: $node still runs jobs after ${DRAIN_TIMEOUT}s; removing it anyway"
      break
    fi
    sleep 2
  done
  slurm_ask scontrol update NodeName="$node" State=DOWN Reason="$DRAIN_REASON" || true
  log "$node drained"
}

# resume_if_ours NODE: return NODE to service when it is out for DRAIN_REASON (its VM was replaced).
resume_if_ours() {
  local node=$1 reason
  if ! node_known "$node"; then
    log "$node is not known to SLURM: nothing to resume"
    return 0
  fi
  # sinfo -N lists the node once per partition; the first line is enough (no `| head`: under pipefail,
  # a reader that stops early fails the writer with SIGPIPE).
  reason=$(slurm_ask sinfo -h -N -n "$node" -o '%E')
  reason=${reason%%$'\n'*}
  if [ "$reason" = "$DRAIN_REASON" ]; then
    slurm_ask scontrol update NodeName="$node" State=RESUME
    log "$node returned to service"
  fi
}
# drain_for_mig NODE: drain NODE before its MIG instances change and wait for its jobs: destroying an
# instance under a job would kill it. Gives up (the layout stays as it is) if jobs outlast DRAIN_TIMEOUT.
drain_for_mig() {
  local node=$1
  if ! node_known "$node"; then
    log "$node is not known to SLURM yet: nothing to drain"
    return 0
  fi
  slurm_ask scontrol update NodeName="$node" State=DRAIN Reason="$MIG_DRAIN_REASON"
  local deadline=$((SECONDS + DRAIN_TIMEOUT)) jobs
  while :; do
    jobs=$(slurm_ask squeue -h -w "$node" -o %i)  # a plain assignment: see drain_and_wait
    [ -n "$jobs" ] || break
    [ "$SECONDS" -lt "$deadline" ] ||
      die "$node still runs jobs after ${DRAIN_TIMEOUT}s: its MIG layout is not changed (it stays drained;" \
        "run pulumi up again once they end, or raise slurm.drain_timeout_s)"
    sleep 2
  done
  log "$node drained for its MIG change"
}
# --- end of SLURM helpers ---
