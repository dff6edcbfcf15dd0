# A job on every compute node, and one GPU job per GPU type (MIG profiles included); prints one JSON line
# for the stack outputs.
# It never queues behind users' work: each srun gives up (--immediate) when the node has no room, and a
# node that is running jobs is reported as busy. Only a node that is idle and still cannot run a job fails.
# A node drained because its MIG devices differ from its layout fails the canary at once, with the reason.
# With monitoring on, its outcome also becomes a textfile metric in CANARY_METRICS (alert CanaryFailed).
record_canary() {
  [ -n "$CANARY_METRICS" ] || return 0
  {
    echo "# HELP hyperscaler_canary_success 1 if the last canary passed, 0 if it failed."
    echo "# TYPE hyperscaler_canary_success gauge"
    echo "hyperscaler_canary_success $(($1 == 0))"
  } | write_textfile "$CANARY_METRICS"
}
results=$(mktemp -d)
trap 'record_canary "$?"; rm -rf "$results"' EXIT
ready() {
  local mismatched
  mismatched=$(sinfo -h -N -n "$COMPUTE_NODES" -o '%N: %E' | grep -F ": $MIG_MISMATCH_REASON" | sort -u || true)
  [ -z "$mismatched" ] || die "$(printf '%s; ' "$mismatched")"
  ! sinfo -h -N -n "$COMPUTE_NODES" -o '%t' | grep -q -v -x -e idle -e mix -e alloc
}
deadline=$((SECONDS + CANARY_TIMEOUT))
until ready; do
  [ "$SECONDS" -lt "$deadline" ] ||
    die "compute nodes not ready after ${CANARY_TIMEOUT}s: $(sinfo -h -N -n "$COMPUTE_NODES" -o '%N %t %E' | sort -u | paste -sd';' -)"
  sleep 1
done
probe_node() {
  local node=$1 out
  # shellcheck disable=SC2016 # $SLURMD_NODENAME must expand on the compute node, not here
  if out=$(srun -N1 -w "$node" --cpus-per-task=1 --mem=16M --immediate=30 --time=5 sh -c 'echo "$SLURMD_NODENAME"' 2>&1); then
    echo "ran $out"
  else
    echo "failed $node $(sinfo -h -N -n "$node" -o '%t' | head -1) ${out//$'\n'/ }"
  fi
}
start=$SECONDS
for node in $(scontrol show hostnames "$COMPUTE_NODES"); do
  probe_node "$node" > "$results/$node" &
  # at most 32 sruns at a time
  while [ "$(jobs -rp | wc -l)" -ge 32 ]; do sleep 0.2; done
done
wait
first_job_s=$((SECONDS - start))
ran=$(cat "$results"/* | awk '$1 == "ran" {print $2}' | sort | paste -sd' ' -)
busy=$(cat "$results"/* | awk '$1 == "failed" && $3 != "idle" {print $2}' | sort | paste -sd' ' -)
broken=$(cat "$results"/* | awk '$1 == "failed" && $3 == "idle"' || true)
[ -z "$broken" ] || die "idle nodes could not run a job: $broken"
uptime_s=$(cut -d. -f1 /proc/uptime)
# Shared storage: a job writes a file on one node and a job on another reads it back.
shared="null"
if [ -n "$SHARED_DIR" ] && [ -n "$ran" ]; then
  writer=${ran%% *}
  reader=${ran##* }
  token="canary-$(date +%s%N)-$$"
  file="$SHARED_DIR/.hyperscaler-$token"
  t0=$(date +%s%N)
  srun -N1 -w "$writer" --cpus-per-task=1 --mem=16M --immediate=30 --time=5 sh -c "echo $token > $file" ||
    die "cannot write $file on $writer"
  seen=$(srun -N1 -w "$reader" --cpus-per-task=1 --mem=16M --immediate=30 --time=5 cat "$file") ||
    die "cannot read $file on $reader"
  t1=$(date +%s%N)
  srun -N1 -w "$reader" --cpus-per-task=1 --mem=16M --immediate=30 --time=5 rm -f "$file" || true
  [ "$seen" = "$token" ] || die "$reader read '$seen' from $file, not what $writer wrote"
  shared=$(printf '{"written_on": "%s", "read_on": "%s", "seconds": %s}' "$writer" "$reader" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')")
fi
gpu_results=""
for gtype in $GPU_TYPES; do
  if visible=$(srun -N1 ${GPU_PARTITION:+-p "$GPU_PARTITION"} --gres="gpu:$gtype:1" --cpus-per-task=1 --mem=16M \
    --immediate=30 --time=5 printenv CUDA_VISIBLE_DEVICES 2>/dev/null); then
    gpu_results="$gpu_results\"$gtype\": \"$visible\", "
  elif sinfo -h -N -n "$COMPUTE_NODES" -t idle -o '%N %G' | awk -v t="gpu:$gtype:" '{n = split($2, g, ",")
      for (i = 1; i <= n; i++) if (index(g[i], t) == 1) found = 1} END {exit !found}'; then
    die "no $gtype GPU job could run although a node with $gtype GPUs is idle"
  else
    gpu_results="$gpu_results\"$gtype\": \"busy\", "
  fi
done
printf '{"nodes": "%s", "busy": "%s", "first_job_seconds": %s, "controller_uptime_seconds": %s, "gpu": {%s}, "shared": %s}\n' \
  "$ran" "$busy" "$first_job_s" "$uptime_s" "${gpu_results%, }" "$shared"
