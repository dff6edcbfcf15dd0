# Tell slurmctld and every slurmd to re-read slurm.conf, then wait until every compute node answers.
scontrol reconfigure
deadline=$((SECONDS + 120))
while :; do
  down=$(sinfo -h -N -n "$COMPUTE_NODES" -o '%N %t' | awk '$2 ~ /\*|down|unk|inval/ {print $1}' | sort -u)
  [ -z "$down" ] && break
  [ "$SECONDS" -lt "$deadline" ] || die "nodes not responding after reconfigure: $(echo "$down" | tr '\n' ' ')"
  sleep 1
done
log "reconfigured; all compute nodes respond"
