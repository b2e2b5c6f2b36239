"""The board's half, priced and checked off the board: the Cortex-A9's stage times under qemu and
llvm-mca (`lic board-rate`: rate.py, stages.py, arm_cycles.py) and the armhf/arm64 check of the host
runtime's C and NEON paths (`make arm-check`: arm_check.py, armhf/). What runs on the board itself is
host/; this folder only models and checks it from an x86 machine."""
