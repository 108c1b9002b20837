"""Skiff's benchmarks: Skiff against real peers, on the same machine, in the same run.

``python -m bench [--quick] [--only STAGE[,STAGE]]`` installs the peers under
``bench/.peers/``, runs the stages (``coldstart``, ``heavy``, ``warm``,
``density``), writes ``bench/results/latest.json`` and renders BENCHMARKS.md
from it. Numbers are reported as figures and ratios, never asserted.
"""
