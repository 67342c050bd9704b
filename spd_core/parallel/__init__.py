"""Running one decomposition on several processes (torch.distributed, no Ray): DDP gradient
averaging, FSDP2 sharding of components, per-rank training state and sharded store writes."""
