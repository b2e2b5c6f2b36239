"""lic-fpga: learned image compression, decoded on FPGA fabric.

This package is the command-line front door (`lic`) and the few helpers every stage shares.
Stage logic lives in the stage packages: training/, quantize/, export/, hls/, host/, bench/.
"""

__version__ = "0.1.0"
