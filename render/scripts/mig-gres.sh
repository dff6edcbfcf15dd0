# mig-gres.sh write:  derive this node's GRES from the MIG devices that exist, compare them with the
#                     declared layout, write GRES_FILE (which the controller's gres.conf includes) and the
#                     verdict to STATUS_FILE. Runs before every slurmd start (a systemd drop-in; lib.sh's
#                     direct start does the same), so slurmd only ever starts with devices that exist.
# mig-gres.sh report: once slurmd has registered, drain the node with a reason saying what differs, or
#                     return it to service if a MIG change or mismatch had drained it and all is well now.
#
# What it reads, all from the NVIDIA driver: `nvidia-smi --query-gpu` (index, PCI bus, device ID, MIG
# mode), `nvidia-smi mig -lci` (each compute instance: GPU index, GI ID, profile, CI ID),
# /proc/driver/nvidia/gpus/<bus>/information (the GPU's device minor, N in /dev/nvidiaN) and
# /proc/driver/nvidia-caps/mig-minors (the minors of /dev/nvidia-caps/nvidia-capM for each GI and CI).
# A MIG device is /dev/nvidiaN plus its GI and CI cap devices: one MultipleFiles line each (gres.conf(5)).
ACTION=${1:?usage: mig-gres.sh write|report}
MIG_MINORS=/proc/driver/nvidia-caps/mig-minors
export LC_ALL=C  # sort as the program sorts DECLARED

# GPUs as "index bus minor device_id mode_current mode_pending", one per line.
gpus() {
  local index bus device current pending minor info
  nvidia-smi --query-gpu=index,pci.bus_id,pci.device_id,mig.mode.current,mig.mode.pending \
    --format=csv,noheader 2>/dev/null | tr -d ' ' | while IFS=, read -r index bus device current pending; do
    bus=$(printf '%s' "$bus" | tr 'A-F' 'a-f')
    bus=${bus: -12}  # nvidia-smi prints an 8-digit PCI domain, /proc a 4-digit one
    info=/proc/driver/nvidia/gpus/$bus/information
    minor=$(awk -F: '$1 == "Device Minor" {gsub(/[ \t]/, "", $2); print $2}' "$info" 2>/dev/null)
    echo "$index $bus ${minor:-?} $device $current $pending"
  done
}

# MIG devices as "gpu_index gi ci profile", from the rows of `nvidia-smi mig -lci`.
mig_devices() {
  nvidia-smi mig -lci 2>/dev/null | awk -F'|' '{
    split($2, f, " ")
    if (f[3] == "MIG" && f[1] ~ /^[0-9]+$/ && f[2] ~ /^[0-9]+$/) print f[1], f[2], f[6], f[4]
  }'
}

minor_of() { awk -v cap="$1" '$1 == cap {print $2}' "$MIG_MINORS" 2>/dev/null; }

# A cap device node is created by nvidia-modprobe on first use; make sure it exists before SLURM needs it.
ensure_cap_device() {
  local device=$1 proc=$2
  [ -c "$device" ] || { command -v nvidia-modprobe >/dev/null && nvidia-modprobe -f "$proc" >/dev/null 2>&1; } || true
  [ -c "$device" ]
}

counts_of() { sort | uniq -c | awk '{print $2 ":" $1}' | sort | paste -sd' ' -; }

write_gres() {
  local problems=() lines=() found=() index bus minor device current pending gi ci profile gi_minor ci_minor
  declare -A minor_by_index=()
  if ! command -v nvidia-smi >/dev/null; then
    problems+=("nvidia-smi is missing (no NVIDIA driver)")
  fi
  while read -r index bus minor device current pending; do
    [ -n "$index" ] || continue
    minor_by_index[$index]=$minor
    if [ "$minor" = "?" ]; then
      problems+=("GPU $index ($bus) has no device minor in /proc/driver/nvidia/gpus")
    fi
    local want=Enabled
    [ "$MIG_ENABLED" = 1 ] || want=Disabled
    if [ "$current" != "$want" ]; then
      problems+=("GPU $index ($bus): MIG mode $current, pending $pending")
    fi
  done < <(gpus)
  while read -r index gi ci profile; do
    [ -n "$index" ] || continue
    minor=${minor_by_index[$index]:-?}
    found+=("$profile")
    [ "$minor" != "?" ] || continue
    gi_minor=$(minor_of "gpu$minor/gi$gi/access")
    ci_minor=$(minor_of "gpu$minor/gi$gi/ci$ci/access")
    if [ -z "$gi_minor" ] || [ -z "$ci_minor" ]; then
      problems+=("$profile (GPU $index, GI $gi, CI $ci) is not in $MIG_MINORS")
      continue
    fi
    local files=("/dev/nvidia$minor" "/dev/nvidia-caps/nvidia-cap$gi_minor" "/dev/nvidia-caps/nvidia-cap$ci_minor")
    local caps="/proc/driver/nvidia/capabilities/gpu$minor/mig/gi$gi"
    if [ ! -c "${files[0]}" ] || ! ensure_cap_device "${files[1]}" "$caps/access" ||
      ! ensure_cap_device "${files[2]}" "$caps/ci$ci/access"; then
      problems+=("$profile (GPU $index, GI $gi, CI $ci): a device file is missing (${files[*]})")
      continue
    fi
    lines+=("NodeName=$NODE_NAME Name=gpu Type=$profile MultipleFiles=$(IFS=,; echo "${files[*]}")")
  done < <(mig_devices | sort -n -k1,1 -k2,2 -k3,3)

  local declared found_text
  declared=$(tr ' ' '\n' <<<"$DECLARED" | sed '/^$/d' | sort | paste -sd' ' -)
  found_text=$(printf '%s\n' "${found[@]}" | sed '/^$/d' | counts_of)
  [ "$declared" = "$found_text" ] || problems+=("declared ${declared:-no MIG devices}, found ${found_text:-none}")

  local plugin="" candidate body
  for candidate in /usr/lib/*/slurm-wlm/gpu_nvml.so /usr/lib/slurm/gpu_nvml.so; do
    [ -e "$candidate" ] && plugin=$candidate && break
  done
  body="# Managed by hyperscaler (mig-gres.sh): this node's MIG devices, derived at slurmd start."
  if [ -n "$plugin" ] && [ "$MIG_ENABLED" = 1 ]; then
    # The image ships SLURM's NVML plugin ($plugin): let it find the MIG devices itself.
    body="$body"$'\n'"NodeName=$NODE_NAME AutoDetect=nvml"
  elif [ "${#lines[@]}" -gt 0 ]; then
    body="$body"$'\n'"$(printf '%s\n' "${lines[@]}")"
  fi
  install -d -m 0755 "$(dirname "$GRES_FILE")" "$(dirname "$STATUS_FILE")"
  if [ "$(cat "$GRES_FILE" 2>/dev/null)" != "$body" ]; then
    printf '%s\n' "$body" > "$GRES_FILE.tmp"
    mv -f "$GRES_FILE.tmp" "$GRES_FILE"
    log "wrote $GRES_FILE (${#lines[@]} MIG devices)"
  fi
  if [ "${#problems[@]}" -eq 0 ]; then
    printf 'match\n' > "$STATUS_FILE"
    log "MIG devices match the layout: ${declared:-MIG off}"
  else
    (IFS=';'; printf 'differs: %s\n' "${problems[*]}") | sed 's/;/; /g' > "$STATUS_FILE"
    log "MIG devices differ from the layout: $(sed 's/^differs: //' "$STATUS_FILE")"
  fi
}

registered() {
  local state
  state=$(sinfo -h -N -n "$NODE_NAME" -o '%t' 2>/dev/null | head -1)
  [ -n "$state" ] && [ "${state%\*}" = "$state" ] && [ "$state" != unk ]
}

# Until the node's state agrees with STATUS_FILE for 3 checks in a row: slurmd's registration may land
# after an update and replace the reason (an invalid registration sets SLURM's own), so keep at it.
report() {
  local status reason wanted stable=0 deadline
  status=$(cat "$STATUS_FILE" 2>/dev/null || echo "differs: $STATUS_FILE is missing (mig-gres.sh write did not run)")
  wanted="$MIG_MISMATCH_REASON: ${status#differs: }"
  wait_for "$NODE_NAME to register with slurmctld" 120 registered
  deadline=$((SECONDS + 60))
  while [ "$stable" -lt 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "the state of $NODE_NAME did not settle: $(sinfo -h -N -n "$NODE_NAME" -o '%t %E')"
    reason=$(sinfo -h -N -n "$NODE_NAME" -o '%E' | head -1)
    if [ "$status" = match ] && is_mig_reason "$reason"; then
      scontrol update NodeName="$NODE_NAME" State=RESUME
      log "$NODE_NAME returned to service: its MIG devices match the layout"
      stable=0
    elif [ "$status" != match ] && [ "$reason" != "$wanted" ]; then
      scontrol update NodeName="$NODE_NAME" State=DRAIN Reason="$wanted"
      log "$NODE_NAME drained: ${status#differs: }"
      stable=0
    else
      stable=$((stable + 1))
    fi
    sleep 1
  done
}

case "$ACTION" in
  write) write_gres ;;
  report) report ;;
  *) die "unknown action $ACTION: use write or report" ;;
esac
