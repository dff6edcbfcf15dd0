# A job on every compute node and one GPU job per GPU type; prints one JSON line for the stack outputs.
wait_for "every compute node idle" "$CANARY_TIMEOUT" sh -c \
  "[ -z \"\$(sinfo -h -N -n '$COMPUTE_NODES' -o '%t' | grep -v -x -e idle -e mix -e alloc)\" ]"
start=$SECONDS
# shellcheck disable=SC2016 # $SLURMD_NODENAME must expand on the compute node, not here
ran=$(srun -N "$COMPUTE_COUNT" -w "$COMPUTE_NODES" --time=5 sh -c 'echo "$SLURMD_NODENAME"' | sort | tr '\n' ' ')
first_job_s=$((SECONDS - start))
uptime_s=$(cut -d. -f1 /proc/uptime)
gpu_results=""
for gtype in $GPU_TYPES; do
  visible=$(srun -N1 ${GPU_PARTITION:+-p "$GPU_PARTITION"} --gres="gpu:$gtype:1" --time=5 printenv CUDA_VISIBLE_DEVICES)
  gpu_results="$gpu_results\"$gtype\": \"$visible\", "
done
printf '{"nodes": "%s", "first_job_seconds": %s, "controller_uptime_seconds": %s, "gpu": {%s}}\n' \
  "${ran% }" "$first_job_s" "$uptime_s" "${gpu_results%, }"
