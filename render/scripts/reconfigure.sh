# Tell slurmctld and every slurmd to re-read slurm.conf, then wait until every compute node answers. A node
# out for its MIG layout (drained with a "hyperscaler: MIG" reason) is its own mig step's business: it may
# be rebooting for a mode change, and it is not waited for.
slurm_ask scontrol reconfigure
deadline=$((SECONDS + 120))
while :; do
  down=$(slurm_ask sinfo -h -N -n "$COMPUTE_NODES" -o '%N|%t|%E' |
    awk -F'|' '$2 ~ /\*|down|unk|inval/ && $3 !~ /^hyperscaler: MIG/ {print $1}' | sort -u)
  [ -z "$down" ] && break
  [ "$SECONDS" -lt "$deadline" ] || die "nodes not responding after reconfigure: $(echo "$down" | tr '\n' ' ')"
  sleep 1
done
log "reconfigured; all compute nodes respond"
