"""``python -m ihuyi_async``: the command-line tool (extra ``cli``; ``ihuyi_async._cli``)."""

from ._cli import main

main()
