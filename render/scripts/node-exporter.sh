# node-exporter on this node, on its management address (ARGS), with the textfile directory where the
# controller's SLURM collector and canary leave their metrics. Restarted only when its options change.
args=$DAEMON_ARGS
have_systemd || args="$args --no-collector.systemd"  # no systemd to ask about units
wanted="# Managed by hyperscaler: node-exporter's options (render/monitoring.py).
ARGS=\"$args\""
defaults=/etc/default/prometheus-node-exporter
if [ "$(cat "$defaults" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$defaults.tmp"
  mv -f "$defaults.tmp" "$defaults"
fi
# It binds the management address: start it once the network is up, and retry until the address exists.
svc_dropin prometheus-node-exporter.service "[Unit]
Wants=network-online.target
After=network-online.target
[Service]
RestartSec=5"
install -d -m 0755 "$TEXTFILE_DIR"
key=$(printf '%s' "$wanted" | sha256sum | cut -d' ' -f1)
if svc_running prometheus-node-exporter; then
  if [ "$(applied_get node-exporter)" != "$key" ]; then
    log "node-exporter's options changed: restarting it"
    svc_restart prometheus-node-exporter
  fi
else
  svc_start prometheus-node-exporter
fi
wait_for "node-exporter on $ADDRESS:$PORT" 30 port_open "$ADDRESS" "$PORT"
applied_set node-exporter "$key"
log "node-exporter ready on $ADDRESS:$PORT"
