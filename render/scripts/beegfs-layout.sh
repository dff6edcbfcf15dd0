# The file system's layout, through BeeGFS's own CLI on a node where it is mounted: buddy mirror groups
# (storage, and metadata, which cannot be undone), storage pools, and stripe patterns of the root and of
# named directories. Each is applied only when it differs from what was applied, so a second run changes
# nothing.
mountpoint -q "$MOUNT" || die "BeeGFS is not mounted at $MOUNT: the client step did not run"
if [ "$VERSION" = 8 ]; then
  require_beegfs beegfs
  cli() { "$(beegfs_tool beegfs)" --mgmtd-addr="$MGMTD:8010" "$@"; }
else
  require_beegfs beegfs-ctl
  cli() { "$(beegfs_tool beegfs-ctl)" "$@"; }
fi
# What was applied is recorded on the file system it describes, so a replaced controller (whose root disk
# is new) does not apply it again.
marks="$MOUNT/.hyperscaler-layout"
[ -d "$marks" ] || install -d -m 0700 "$marks"
mark_get() { cat "$marks/$1" 2>/dev/null || true; }
mark_set() { printf '%s\n' "$2" > "$marks/$1.tmp" && mv -f "$marks/$1.tmp" "$marks/$1"; }
if [ "$MIRROR_STORAGE" = 1 ] && [ "$(mark_get beegfs-mirror-storage)" != created ]; then
  if [ "$VERSION" = 8 ]; then cli mirror autocreate storage; else cli --addmirrorgroup --automatic --nodetype=storage; fi
  mark_set beegfs-mirror-storage created
fi
if [ "$MIRROR_METADATA" = 1 ] && [ "$(mark_get beegfs-mirror-metadata)" != created ]; then
  if [ "$VERSION" = 8 ]; then
    cli mirror autocreate meta
    cli mirror init --yes
  else
    cli --addmirrorgroup --automatic --nodetype=meta
    cli --mirrormd
  fi
  mark_set beegfs-mirror-metadata created
fi
if [ "$MIRROR_METADATA" = 0 ] && [ "$(mark_get beegfs-mirror-metadata)" = created ]; then
  log "WARNING: metadata mirroring stays on: BeeGFS cannot switch it off (the stack file says false)"
fi
pool_id() {  # pool_id NAME: 7.4's numeric id of a pool (beegfs-ctl --liststoragepools: id, name, targets)
  cli --liststoragepools | awk -v name="$1" '$2 == name { print $1 }'
}
# A pool is created once; targets added to it later are assigned to it. A target dropped from a pool in
# the stack file stays in it until moved by hand (moving files' home is an admin's decision).
for pool in $POOLS; do
  name=${pool%%=*}
  targets=${pool#*=}
  applied=$(mark_get "beegfs-pool-$name")
  [ "$applied" = "$targets" ] && continue
  if [ "$VERSION" = 8 ]; then
    if [ -z "$applied" ]; then cli pool create "$name" --targets="$targets"; else cli pool assign "$name" --targets="$targets"; fi
  elif [ -z "$applied" ]; then
    cli --addstoragepool --desc="$name" --targets="$targets"
  else
    cli --modifystoragepool --id="$(pool_id "$name")" --addtargets="$targets"
  fi
  mark_set "beegfs-pool-$name" "$targets"
done
set_pattern() {  # set_pattern DIR CHUNK TARGETS POOL PATTERN
  local args=()
  if [ "$VERSION" = 8 ]; then
    [ -n "$2" ] && args+=(--chunk-size="$2")
    [ -n "$3" ] && args+=(--num-targets="$3")
    [ -n "$4" ] && args+=(--pool="$4")
    cli entry set --pattern="$5" "${args[@]}" "$1"
  else
    [ -n "$2" ] && args+=(--chunksize="$2")
    [ -n "$3" ] && args+=(--numtargets="$3")
    [ -n "$4" ] && args+=(--storagepoolid="$(pool_id "$4")")
    [ "$5" = mirrored ] && args+=(--pattern=buddymirror)
    cli --setpattern "${args[@]}" "$1"
  fi
}
root_key="$ROOT_CHUNK $ROOT_TARGETS"
if [ "$(mark_get beegfs-root-pattern)" != "$root_key" ]; then
  set_pattern "$MOUNT" "$ROOT_CHUNK" "$ROOT_TARGETS" "" raid0
  mark_set beegfs-root-pattern "$root_key"
fi
for entry in $DIRECTORIES; do
  IFS='|' read -r path chunk count pool pattern <<<"$entry"
  dir="$MOUNT/$path"
  [ -d "$dir" ] || install -d -m 1777 "$dir"
  [ "$(mark_get "beegfs-dir-${path//\//_}")" = "$entry" ] && continue
  set_pattern "$dir" "$chunk" "$count" "$pool" "$pattern"
  mark_set "beegfs-dir-${path//\//_}" "$entry"
done
log "BeeGFS layout applied"
