# slurm-metrics.sh start: collect now, then every INTERVAL seconds (a systemd timer, or a loop where
# systemd is not PID 1). slurm-metrics.sh collect: write SLURM's nodes by state, jobs by partition and
# state, and GPU GRES allocated against total to METRICS_FILE, for node-exporter's textfile collector.
# Debian packages no SLURM exporter; this reads sinfo, squeue and scontrol on the controller.
ACTION=${1:-start}

# Label values are SLURM names and states: keep them to the characters those use.
clean() { tr -c 'A-Za-z0-9_.,: \n-' '_'; }

collect() {
  local nodes jobs partitions gres
  {
    echo "# HELP slurm_up 1 when slurmctld answered the collector, 0 when it did not."
    echo "# TYPE slurm_up gauge"
    if ! nodes=$(sinfo -h -N -o '%N %T' 2>/dev/null) || ! jobs=$(squeue -h -a -o '%P %T' 2>/dev/null) ||
      ! partitions=$(sinfo -h -o '%R' 2>/dev/null) || ! gres=$(scontrol -o show node 2>/dev/null); then
      echo "slurm_up 0"
      return 0
    fi
    echo "slurm_up 1"
    # sinfo -N lists a node once per partition; %T is its state, then flag characters (down*, idle~).
    nodes=$(printf '%s\n' "$nodes" | awk 'NF == 2 {sub(/[^a-z]+$/, "", $2); print $1, $2}' | clean | sort -u)
    if [ -n "$nodes" ]; then
      echo "# HELP slurm_node_state 1 for each SLURM node in its state (sinfo %T without its flags)."
      echo "# TYPE slurm_node_state gauge"
      printf '%s\n' "$nodes" | awk '{printf "slurm_node_state{slurm_node=\"%s\",state=\"%s\"} 1\n", $1, $2}'
      echo "# HELP slurm_nodes SLURM nodes by state."
      echo "# TYPE slurm_nodes gauge"
      printf '%s\n' "$nodes" | awk '{n[$2]++} END {for (s in n) printf "slurm_nodes{state=\"%s\"} %d\n", s, n[s]}' |
        sort
    fi
    echo "# HELP slurm_jobs Jobs by partition and state (squeue); running and pending are always present."
    echo "# TYPE slurm_jobs gauge"
    {
      printf '%s\n' "$partitions" | clean | awk 'NF {print $1, "RUNNING", 0; print $1, "PENDING", 0}'
      printf '%s\n' "$jobs" | clean | awk 'NF == 2 {print $1, $2, 1}'
    } | awk '{n[$1 " " tolower($2)] += $3}
      END {for (k in n) {split(k, f, " "); printf "slurm_jobs{partition=\"%s\",state=\"%s\"} %d\n", f[1], f[2], n[k]}}' |
      sort
    # CfgTRES holds a node's GPUs (gres/gpu=N), AllocTRES those its jobs hold now.
    gres=$(printf '%s\n' "$gres" | awk '{
        name = ""; total = ""; used = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^NodeName=/) name = substr($i, 10)
          if ($i ~ /^CfgTRES=/ && match($i, /gres\/gpu=[0-9]+/)) total = substr($i, RSTART + 9, RLENGTH - 9)
          if ($i ~ /^AllocTRES=/ && match($i, /gres\/gpu=[0-9]+/)) used = substr($i, RSTART + 9, RLENGTH - 9)
        }
        if (name != "" && total != "") print name, total, used
      }' | clean | sort)
    if [ -n "$gres" ]; then
      echo "# HELP slurm_node_gpus GPUs in the node's GRES."
      echo "# TYPE slurm_node_gpus gauge"
      printf '%s\n' "$gres" | awk '{printf "slurm_node_gpus{slurm_node=\"%s\"} %d\n", $1, $2}'
      echo "# HELP slurm_node_gpus_allocated GPUs of the node's GRES that jobs hold."
      echo "# TYPE slurm_node_gpus_allocated gauge"
      printf '%s\n' "$gres" | awk '{printf "slurm_node_gpus_allocated{slurm_node=\"%s\"} %d\n", $1, $3}'
    fi
  } | write_textfile "$METRICS_FILE"
}

start() {
  collect
  local self key
  self=$(readlink -f "$0")
  if have_systemd; then
    local unit=/etc/systemd/system/slurm-metrics
    local service="[Unit]
Description=hyperscaler: SLURM metrics for node-exporter's textfile collector
[Service]
Type=oneshot
ExecStart=$self collect"
    local timer="[Unit]
Description=hyperscaler: SLURM metrics every ${INTERVAL}s
[Timer]
OnBootSec=${INTERVAL}s
OnUnitActiveSec=${INTERVAL}s
AccuracySec=1s
[Install]
WantedBy=timers.target"
    if [ "$(cat "$unit.service" 2>/dev/null)" != "$service" ] || [ "$(cat "$unit.timer" 2>/dev/null)" != "$timer" ]; then
      printf '%s\n' "$service" > "$unit.service"
      printf '%s\n' "$timer" > "$unit.timer"
      systemctl daemon-reload
    fi
  fi
  # The timer (or the loop) runs this very script: a new version of it restarts them.
  key=$(sha256sum "$self" | cut -d' ' -f1)
  if ! svc_running slurm-metrics.timer; then
    svc_start slurm-metrics.timer
  elif [ "$(applied_get slurm-metrics)" != "$key" ]; then
    svc_restart slurm-metrics.timer
  fi
  wait_for "the SLURM metrics collector" 30 svc_running slurm-metrics.timer
  applied_set slurm-metrics "$key"
  log "SLURM metrics in $METRICS_FILE every ${INTERVAL}s"
}

case "$ACTION" in
  start) start ;;
  collect) collect ;;
  loop)
    while :; do
      collect || log "collecting failed; trying again in ${INTERVAL}s"
      sleep "$INTERVAL"
    done ;;
  *) die "unknown action $ACTION: use start, collect or loop" ;;
esac
