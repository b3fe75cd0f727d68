"""``python -m neuronperf`` runs the command line."""

from neuronperf.cli import console_main

if __name__ == "__main__":
    console_main()
