"""How the analyses run: loading ahead, splitting work that runs out of device memory,
compiled blocks, the allocator's settings, several processes under ``torchrun``."""
