# The BeeGFS metadata and storage services of this storage node. A metadata directory or storage target
# is initialised once, with its fixed numeric ids, and only when it is empty: a directory that already
# holds data is never initialised again. Its volume must be mounted (the data volume steps run first), so
# a failed mount can never make BeeGFS initialise the root disk instead.
require_beegfs beegfs-meta beegfs-storage beegfs-setup-meta beegfs-setup-storage
[ -s /etc/beegfs/conn.auth ] || die "/etc/beegfs/conn.auth is missing: the auth file step did not run"

initialise() {  # initialise DIR ID-FILE SETUP-ARGS...: run the setup tool only on a new, empty directory
  local dir=$1 id_file=$2
  shift 2
  mountpoint -q "$(dirname "$dir")" || die "$(dirname "$dir") is not mounted: refusing to initialise $dir on the root disk"
  if [ -e "$dir/$id_file" ]; then
    return 0
  fi
  if [ -d "$dir" ] && [ -n "$(ls -A -I lost+found "$dir")" ]; then
    die "$dir holds data but no $id_file: refusing to initialise it (look at it by hand)"
  fi
  log "initialising $dir"
  "$@"
}
# -C: the configuration files are the program's (pushed whole); the tools only prepare the directories.
initialise "$META_DIR" nodeNumID "$(beegfs_tool beegfs-setup-meta)" -C -p "$META_DIR" -s "$NODE_ID" -m "$MGMTD"
for entry in $TARGETS; do
  target_id=${entry%%:*}
  dir=${entry#*:}
  initialise "$dir" targetNumID "$(beegfs_tool beegfs-setup-storage)" -C -p "$dir" -s "$NODE_ID" -i "$target_id" -m "$MGMTD"
  [ "$(cat "$dir/targetNumID")" = "$target_id" ] || die "$dir belongs to target $(cat "$dir/targetNumID"), not $target_id"
done
[ "$(cat "$META_DIR/nodeNumID")" = "$NODE_ID" ] || die "$META_DIR belongs to node $(cat "$META_DIR/nodeNumID"), not $NODE_ID"
conf_sha=$(cat /etc/beegfs/beegfs-meta.conf /etc/beegfs/beegfs-storage.conf /etc/beegfs/conn.auth | sha256sum | cut -d' ' -f1)
for service in beegfs-meta beegfs-storage; do
  if svc_running "$service" && [ "$(applied_get "$service")" != "$conf_sha" ]; then
    svc_restart "$service"
  else
    svc_start "$service"
  fi
  wait_for "$service" 60 svc_running "$service"
  applied_set "$service" "$conf_sha"
done
log "BeeGFS metadata and storage services ready"
