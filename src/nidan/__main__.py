"""``python -m nidan``: the same as the ``nidan`` command."""

from nidan.cli.main import app

app(prog_name="nidan")
