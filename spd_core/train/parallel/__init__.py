"""Running one decomposition on several processes with plain torch.distributed (no Ray): DDP
gradient averaging, FSDP2 sharding of the components (tied pairs included) and of the frozen
target, and per-worker memory accounting."""
