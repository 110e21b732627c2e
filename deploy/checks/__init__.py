"""The offline checks of the deploy files, one module a kind of file, run by deploy/check.py.

Each module has ``check(root: Path) -> list[str]``: ``root`` is a checkout (or a copy of one
with a value broken on purpose); the function returns one line for each thing it verified and
raises ``CheckError`` with every problem it found. They run in .venv-deploy (the validators'
own locked environment, requirements-deploy.lock), never import ffe, and touch no network.
"""
