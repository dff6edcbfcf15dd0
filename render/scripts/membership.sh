# membership.sh join NODE: return NODE to service if this program drained it (its VM was replaced).
# membership.sh leave NODE: drain NODE and wait for its jobs (or DRAIN_TIMEOUT) before its VM goes away.
# A node SLURM does not know has nothing to drain or resume.
ACTION=${1:?usage: membership.sh join|leave NODE}
NODE=${2:?usage: membership.sh join|leave NODE}
case "$ACTION" in
  join) resume_if_ours "$NODE" ;;
  leave) drain_and_wait "$NODE" ;;
  *) die "unknown action $ACTION: use join or leave" ;;
esac
