"""Allow `python -m lfm_pack` wherever the console script is not on PATH."""

from lfm_pack.cli import main

if __name__ == "__main__":
    main()
