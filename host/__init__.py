"""Host runtime: everything the board's ARM core runs. Torch-free by design (numpy, Pillow, rANS)."""
