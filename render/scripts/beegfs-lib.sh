# --- BeeGFS helpers (render/scripts/beegfs-lib.sh) ---
BEEGFS_SBIN=/opt/beegfs/sbin

# beegfs_tool NAME: the tool's path, on PATH or in BeeGFS's sbin.
beegfs_tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; else printf '%s\n' "$BEEGFS_SBIN/$1"; fi
}

# require_beegfs TOOL...: stop, before anything is changed, when BeeGFS is not installed.
require_beegfs() {
  local tool missing=()
  for tool in "$@"; do
    [ -x "$(beegfs_tool "$tool")" ] || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] ||
    die "BeeGFS $VERSION is not installed here (missing: ${missing[*]}); the packages step installs it from the repository the stack names. Nothing was changed."
  have_systemd || die "BeeGFS's services run under systemd, and this node has no systemd. Nothing was changed."
}

# write_if_changed PATH MODE CONTENT: replace PATH atomically when its content differs; exit 0 if it changed.
write_if_changed() {
  local path=$1 mode=$2 content=$3
  [ "$(cat "$path" 2>/dev/null)" = "$content" ] && return 1
  printf '%s\n' "$content" > "$path.hyperscaler"
  chmod "$mode" "$path.hyperscaler"
  mv -f "$path.hyperscaler" "$path"
}

# beegfs_missing IDS...: the expected ids (meta:N storage:N target:N) that mgmtd does not list yet.
beegfs_missing() {
  local listing id number
  if [ "$VERSION" = 8 ]; then
    listing=$("$(beegfs_tool beegfs)" --mgmtd-addr=127.0.0.1:8010 node list 2>/dev/null; "$(beegfs_tool beegfs)" --mgmtd-addr=127.0.0.1:8010 target list 2>/dev/null) || true
  else
    listing=$("$(beegfs_tool beegfs-ctl)" --listnodes --nodetype=meta 2>/dev/null; "$(beegfs_tool beegfs-ctl)" --listnodes --nodetype=storage 2>/dev/null; "$(beegfs_tool beegfs-ctl)" --listtargets 2>/dev/null) || true
  fi
  for id in "$@"; do
    number=${id#*:}
    grep -qw -- "$number" <<<"$listing" || printf '%s\n' "$id"
  done
}
# --- end of BeeGFS helpers ---
