"""What-if hardware studies: engine placement, numerics, the memory wall and design-space sweeps."""
