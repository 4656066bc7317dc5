"""``python -m corral`` runs the ``corral`` command."""

from corral.cli.main import main

if __name__ == "__main__":
    main(prog_name="corral")
