"""`spd harvest` on Ray: Ray Data actors run spd_core.harvest's steps shard by shard; the driver
merges the checkpointed shards in order and writes the harvest into the store."""
