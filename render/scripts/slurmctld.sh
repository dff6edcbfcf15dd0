# Start slurmctld, or restart it when node definitions or restart-class keys changed. Nodes that leave
# slurm.conf are drained first and their jobs waited for, up to DRAIN_TIMEOUT seconds; so are nodes whose
# MIG layout changes (MIG_GRES: hostlist=GRES pairs of the MIG nodes).
install -d -o slurm -g slurm -m 0755 "$STATE_SAVE" /var/log/slurm
if svc_running slurmctld; then
  if [ "$(applied_get slurmctld)" != "$RESTART_KEY" ]; then
    known=$(slurm_ask scontrol show node -o | sed -n 's/^NodeName=\([^ ]*\).*/\1/p' | sort)
    # COMPUTE_NODES is a hostlist expression (cpu-[01-02]): let SLURM expand it, never split it by hand.
    wanted=$(scontrol show hostnames "$COMPUTE_NODES" | sort)
    for node in $(comm -23 <(printf '%s\n' "$known") <(printf '%s\n' "$wanted")); do
      drain_and_wait "$node"
    done
    # A node whose MIG GRES changes is drained, and its jobs waited for, before the new counts take effect.
    for entry in $MIG_GRES; do
      for node in $(scontrol show hostnames "${entry%%=*}"); do
        have=$( (slurm_ask scontrol show node "$node" -o 2>/dev/null || true) | grep -o ' Gres=[^ ]*' | cut -d= -f2- || true)
        if [ -n "$have" ] && [ "$(tr , '\n' <<<"$have" | sort)" != "$(tr , '\n' <<<"${entry#*=}" | sort)" ]; then
          log "$node: GRES $have becomes ${entry#*=}"
          drain_for_mig "$node"
        fi
      done
    done
    log "node definitions changed: restarting slurmctld"
    svc_restart slurmctld
  fi
else
  svc_start slurmctld
fi
wait_for "slurmctld to answer" 60 scontrol ping
applied_set slurmctld "$RESTART_KEY"
log "slurmctld ready"
