# Drain one compute node and wait for its jobs (or DRAIN_TIMEOUT), before its VM is destroyed.
# A node SLURM no longer knows has nothing to drain.
NODE=${1:?usage: drain.sh NODE}
drain_and_wait "$NODE"
