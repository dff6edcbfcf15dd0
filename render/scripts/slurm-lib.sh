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

# drain_and_wait NODE: drain, then wait for the node's jobs up to DRAIN_TIMEOUT seconds, then mark it down.
drain_and_wait() {
  local node=$1
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM: nothing to drain"
    return 0
  fi
  scontrol update NodeName="$node" State=DRAIN Reason="$DRAIN_REASON"
  local deadline=$((SECONDS + DRAIN_TIMEOUT))
  while [ -n "$(squeue -h -w "$node" -o %i)" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "WARNING: $node still runs jobs after ${DRAIN_TIMEOUT}s; removing it anyway"
      break
    fi
    sleep 2
  done
  scontrol update NodeName="$node" State=DOWN Reason="$DRAIN_REASON" || true
  log "$node drained"
}

# resume_if_ours NODE: return NODE to service when it is out for DRAIN_REASON (its VM was replaced).
resume_if_ours() {
  local node=$1 reason
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM: nothing to resume"
    return 0
  fi
  reason=$(sinfo -h -N -n "$node" -o '%E' | head -1)
  if [ "$reason" = "$DRAIN_REASON" ]; then
    scontrol update NodeName="$node" State=RESUME
    log "$node returned to service"
  fi
}
# drain_for_mig NODE: drain NODE before its MIG instances change and wait for its jobs: destroying an
# instance under a job would kill it. Gives up (the layout stays as it is) if jobs outlast DRAIN_TIMEOUT.
drain_for_mig() {
  local node=$1
  if ! scontrol show node "$node" >/dev/null 2>&1; then
    log "$node is not known to SLURM yet: nothing to drain"
    return 0
  fi
  scontrol update NodeName="$node" State=DRAIN Reason="$MIG_DRAIN_REASON"
  local deadline=$((SECONDS + DRAIN_TIMEOUT))
  while [ -n "$(squeue -h -w "$node" -o %i)" ]; do
    [ "$SECONDS" -lt "$deadline" ] ||
      die "$node still runs jobs after ${DRAIN_TIMEOUT}s: its MIG layout is not changed (it stays drained;" \
        "run pulumi up again once they end, or raise slurm.drain_timeout_s)"
    sleep 2
  done
  log "$node drained for its MIG change"
}
# --- end of SLURM helpers ---
