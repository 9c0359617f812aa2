"""``python -m ihuyi_async``: the command-line tool (extra ``cli``)."""

from ._cli import main

main()
